"""`VQVAETrainer`'s training and test steps, on TensorFlow (a tape) and JAX (stateless, one
`jax.vjp`): the loss terms of a training step (`forward` with the SSIM weight warming up, and
the adversarial hinge losses when a discriminator is on), the adaptive weight that combines the
reconstruction and adversarial gradients, and the metrics each step reports.

A mixin: it holds no weights and needs the model's `forward`, `decoder`, `discriminator`,
`optimizer`, `trackers` and settings, which `vqvae_trainer.VQVAETrainer` (and `VQVAE2Trainer`)
give it.
"""
from __future__ import annotations

from typing import Any, Mapping

import keras
from keras import ops

from brainvq.hints import Tensor
from brainvq.losses import adversarial


class VQVAETrainingSteps:
    """`train_step` and `test_step` for a VQ-VAE model (see the module docstring)."""

    def _report(self, results: Mapping[str, Tensor]) -> dict[str, Tensor]:
        for name, tracker in self.trackers.items():
            if name in results:  # the adversarial terms exist only in training steps
                tracker.update_state(results[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _ssim_warmup(self) -> Tensor:
        """Fraction of the SSIM weight in use: ramps from 0 to 1 over the warm-up steps."""
        return ops.minimum(ops.cast(self.optimizer.iterations, "float32")
                           / max(self.ssim_warmup_steps, 1), 1.0)

    def _training_losses(self, images: Tensor) -> dict[str, Tensor]:
        """`forward` in training mode, plus the adversarial terms when they are on.

        Returns the forward results; with a discriminator also "generator_loss" (the
        generator's hinge loss), "discriminator_loss" (the discriminator's, on the images and
        the detached reconstructions) and "adversarial_on" (1.0 from `adversarial_start` steps
        on, else 0.0)."""
        results = self.forward(images, training=True,
                               ssim_weight=self.ssim_weight * self._ssim_warmup())
        if self.discriminator is None:
            return results
        reconstructions = results["reconstructions"]
        results["generator_loss"] = adversarial.generator_hinge(
            self.discriminator(reconstructions, training=True))
        results["discriminator_loss"] = adversarial.discriminator_hinge(
            self.discriminator(ops.cast(self.real_images(images), "float32"), training=True),
            self.discriminator(ops.stop_gradient(reconstructions), training=True))
        results["adversarial_on"] = ops.cast(
            self.optimizer.iterations >= self.adversarial_start, "float32")
        return results

    def _split_variables(self) -> tuple[list[int], list[int], int]:
        """(generator variable indices, discriminator variable indices, index of the decoder's
        last kernel) in `trainable_variables`."""
        discriminator = {id(variable) for variable in self.discriminator.trainable_variables}
        generator, critic = [], []
        for index, variable in enumerate(self.trainable_variables):
            (critic if id(variable) in discriminator else generator).append(index)
        last = id(self.decoder.get_layer("to_image").kernel)
        last_index = next(index for index, variable in enumerate(self.trainable_variables)
                          if id(variable) == last)
        return generator, critic, last_index

    def adversarial_scale(self, reconstruction_gradient: Tensor,
                          generator_gradient: Tensor) -> Tensor:
        """The factor `adversarial_weight` multiplies, from the two gradients at the decoder's
        last layer: VQGAN's adaptive weight (a subclass may hold it fixed)."""
        return adversarial.adaptive_weight(reconstruction_gradient, generator_gradient)

    def _combine_gradients(self, reconstruction: list, generator: list, critic: list,
                           results: dict[str, Tensor]) -> list:
        """Gradients to apply: the reconstruction gradient plus the adaptively weighted
        adversarial one for the VQ-VAE's variables, the hinge gradient for the
        discriminator's. Each argument is a list over `trainable_variables` (None: no
        gradient); `results` gets "adversarial_weight"."""
        generator_indices, critic_indices, last = self._split_variables()
        weight = (self.adversarial_weight * results["adversarial_on"]
                  * self.adversarial_scale(reconstruction[last], generator[last]))
        results["adversarial_weight"] = weight
        combined = [None] * len(self.trainable_variables)
        for index in generator_indices:
            parts = [g for g in (reconstruction[index],
                                 None if generator[index] is None else weight * generator[index])
                     if g is not None]
            combined[index] = (sum(parts[1:], parts[0]) if parts
                               else ops.zeros_like(self.trainable_variables[index]))
        for index in critic_indices:
            combined[index] = (critic[index] if critic[index] is not None
                               else ops.zeros_like(self.trainable_variables[index]))
        return combined

    def train_step(self, *args: Any) -> Any:
        # JAX calls train_step(state, data) and wants the new state back; TensorFlow calls
        # train_step(data) and updates variables in place.
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        (data,) = args
        images = data[0] if isinstance(data, (tuple, list)) else data
        import tensorflow as tf

        adversarial_on = self.discriminator is not None
        with tf.GradientTape(persistent=adversarial_on) as tape:
            results = self._training_losses(images)
            # Gradients are summed over replicas, so each replica contributes its share.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync

            def scaled(loss: Tensor) -> Tensor:
                return self.optimizer.scale_loss(loss / replicas)

            scaled_loss = scaled(results["loss"])
            if adversarial_on:
                scaled_generator = scaled(results["generator_loss"])
                scaled_critic = scaled(results["discriminator_loss"] * results["adversarial_on"])
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        if adversarial_on:
            gradients = self._combine_gradients(
                gradients, tape.gradient(scaled_generator, variables),
                tape.gradient(scaled_critic, variables), results)
            del tape
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._report(results)

    def test_step(self, *args: Any) -> Any:
        if keras.backend.backend() == "jax":
            return self._jax_test_step(*args)
        (data,) = args
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self._report(self.forward(images, training=False))

    # -- JAX: the same steps, written statelessly ----------------------------------------------

    def _stateless_losses(self, trainable: list, non_trainable: list, optimizer_variables: list,
                          images: Tensor, training: bool) -> tuple[tuple, tuple[dict, list]]:
        """The step's losses with the given variable values.

        Returns ((loss, generator_loss, discriminator_loss), (results, non_trainable)); in
        training the losses are the optimizer's scaled losses (`scale_loss`: times the loss
        scale under a `LossScaleOptimizer`, unchanged otherwise), because its `stateless_apply`
        divides the gradients by that scale, as on TensorFlow. Without a discriminator (or
        outside training) the two adversarial losses are 0."""
        mapping = (list(zip(self.trainable_variables, trainable))
                   + list(zip(self.non_trainable_variables, non_trainable))
                   + list(zip(self.optimizer.variables, optimizer_variables)))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            if training:
                results = self._training_losses(images)
                scale = self.optimizer.scale_loss
            else:
                results = self.forward(images, training=False)
                scale = lambda loss: loss  # noqa: E731
            zero = ops.zeros((), "float32")
            losses = (scale(results["loss"]),
                      scale(results.get("generator_loss", zero)),
                      scale(results.get("discriminator_loss", zero)
                            * results.get("adversarial_on", zero)))
        updated = []
        for variable, value in zip(self.non_trainable_variables, non_trainable):
            new_value = scope.get_current_value(variable)
            updated.append(value if new_value is None else new_value)
        return losses, (results, updated)

    def _stateless_report(self, metrics_variables: list, results: Mapping[str, Tensor]
                          ) -> tuple[dict[str, Tensor], list]:
        logs, updated = {}, []
        for tracker in self.metrics:
            count = len(tracker.variables)
            values = metrics_variables[len(updated):len(updated) + count]
            if tracker.name in results:
                values = tracker.stateless_update_state(values, results[tracker.name])
            logs[tracker.name] = tracker.stateless_result(values)
            updated.extend(values)
        return logs, updated

    def _jax_train_step(self, state: tuple, data: Any) -> tuple[dict[str, Tensor], tuple]:
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        images = data[0] if isinstance(data, (tuple, list)) else data

        def losses(trainable_values: list) -> tuple:
            return self._stateless_losses(trainable_values, non_trainable, optimizer_variables,
                                          images, True)

        # One forward pass, one backward pass per loss (only the first without a discriminator).
        outputs, backward, (results, non_trainable) = jax.vjp(losses, trainable, has_aux=True)

        def gradient_of(which: int) -> list:
            cotangent = tuple(ops.ones_like(value) if number == which else ops.zeros_like(value)
                              for number, value in enumerate(outputs))
            return list(backward(cotangent)[0])

        gradients = gradient_of(0)
        if self.discriminator is not None:
            gradients = self._combine_gradients(gradients, gradient_of(1), gradient_of(2),
                                                results)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable)
        logs, metrics_variables = self._stateless_report(metrics_variables, results)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def _jax_test_step(self, state: tuple, data: Any) -> tuple[dict[str, Tensor], tuple]:
        trainable, non_trainable, metrics_variables = state
        images = data[0] if isinstance(data, (tuple, list)) else data
        _, (results, non_trainable) = self._stateless_losses(
            trainable, non_trainable, self.optimizer.variables, images, False)
        logs, metrics_variables = self._stateless_report(metrics_variables, results)
        return logs, (trainable, non_trainable, metrics_variables)
