"""The VQ-VAE's losses beside MSE: SSIM, perceptual (VGG16 features), adversarial (PatchGAN)."""
