#!/usr/bin/env bash
# The issue-49 prior runs and their validation ranking, from the repository root (2 CPU cores:
# about 2-3 minutes an epoch). Runs go under runs/ (git-ignored); start a long one in the
# background from a frozen copy of the code (`git worktree add`), and continue it with --resume.
#   bash docs/runs/issue49.sh aug49            # the prior shipped before + the augmentation condition
#   bash docs/runs/issue49.sh aug49b           # aug49's epoch 9, unaugmented grids 4x
#   bash docs/runs/issue49.sh aug49c           # aug49b's epoch 6, no shift augmentation
#   bash docs/runs/issue49.sh noaug49          # aug49c's epoch 2 on the unaugmented grids only
#   bash docs/runs/issue49.sh pose49           # aug49c's epoch 2 told each grid's head pose
#   bash docs/runs/issue49.sh pose49b          # pose49's epoch 5, 8 epochs more
#   bash docs/runs/issue49.sh realism RUN 3,6  # rank a run's snapshots on the validation subjects
#   bash docs/runs/issue49.sh ship RUN EPOCH   # RUN's epoch-EPOCH prior into pretrained/
#                                              # (shipped before: ship runs/aug49c 2)
#   bash docs/runs/issue49.sh settings         # the shipped model's sampling settings, re-chosen
# Extra flags go to train.py (e.g. --resume).
# DATA (default ../shared/data/ixi) is the IXI T1 folder with demographics.csv.
set -euo pipefail
DATA=${DATA:-../shared/data/ixi}
export TF_CPP_MIN_LOG_LEVEL=2
FLAGS=(--stage prior --data-dir "$DATA" --split 125,20,20 --covariates "$DATA/demographics.csv"
       --condition-on age,sex --skip-bad true --prior-epochs 200 --prior-weight-averaging 0.995
       --prior-augment-condition true --prior-snapshot-every 1)

# The model shipped before issue 49 (commit 462f183): aug49 starts from its prior, and every run
# here trains over its VQ-VAE (the same file as now: the prior is trained over it, not retrained).
BEFORE=462f183
before() { git show "$BEFORE:pretrained/ixi-t1-128/$1"; }

# A run folder holding that VQ-VAE, its hyperparameters and its training subjects.
over_shipped_vqvae() {
  [ -f "$1/vqvae.keras" ] && return 0  # made before: its state records the training so far
  mkdir -p "$1"
  before vqvae.keras > "$1/vqvae.keras"
  before hyperparameters.json > "$1/hyperparameters.json"
  before training_state.json | python -c "
import json, sys
state = json.load(sys.stdin)
json.dump({key: state[key] for key in ('vqvae', 'subjects') if key in state},
          open('$1/training_state.json', 'w'), indent=2)"
}

# A run's epoch-E snapshot as a .keras checkpoint, to start another run from.
snapshot_checkpoint() {
  [ -f "$1/prior_e$2.keras" ] && return 0
  python - "$1" "$2" <<'PY'
import sys
from brainvq.runs import run_folder
prior = run_folder.load_prior(sys.argv[1])
prior.load_weights(f"{sys.argv[1]}/snapshots/prior_epoch_{int(sys.argv[2]):03d}.weights.h5")
prior.save(f"{sys.argv[1]}/prior_e{sys.argv[2]}.keras")
PY
}

case "$1" in
  aug49)
    over_shipped_vqvae runs/aug49
    [ -f runs/prior_before49.keras ] || before prior.keras > runs/prior_before49.keras
    python train.py "${FLAGS[@]}" --output-dir runs/aug49 --prior-patience 10 \
      --prior-init runs/prior_before49.keras "${@:2}" ;;
  aug49b)
    over_shipped_vqvae runs/aug49b && snapshot_checkpoint runs/aug49 9
    python train.py "${FLAGS[@]}" --output-dir runs/aug49b --prior-patience 10 \
      --prior-original-weight 4 --prior-learning-rate 0.0005 --prior-init runs/aug49/prior_e9.keras "${@:2}" ;;
  aug49c)
    over_shipped_vqvae runs/aug49c && snapshot_checkpoint runs/aug49b 6
    python train.py "${FLAGS[@]}" --output-dir runs/aug49c --prior-patience 6 \
      --prior-augment-shift 0 --prior-original-weight 4 --prior-learning-rate 0.0005 \
      --prior-init runs/aug49b/prior_e6.keras "${@:2}" ;;
  noaug49)
    # aug49c's epoch 2 fine-tuned on the unaugmented grids only (no augmentation, no condition)
    over_shipped_vqvae runs/noaug49 && snapshot_checkpoint runs/aug49c 2
    python train.py "${FLAGS[@]}" --output-dir runs/noaug49 --prior-patience 4 \
      --prior-augment-copies 0 --prior-augment-condition false --prior-learning-rate 0.0002 \
      --prior-epochs 12 --prior-init runs/aug49c/prior_e2.keras "${@:2}" ;;
  pose49)
    # aug49c's epoch 2 told each training grid's measured head pose (centroid offset, tilt) in
    # place of the applied shift and rotation, and sampled at a centred, upright pose
    over_shipped_vqvae runs/pose49 && snapshot_checkpoint runs/aug49c 2
    python train.py "${FLAGS[@]}" --output-dir runs/pose49 --prior-patience 4 \
      --prior-augment-shift 0 --prior-original-weight 4 --prior-learning-rate 0.0005 \
      --prior-pose-condition true --prior-epochs 12 --prior-init runs/aug49c/prior_e2.keras "${@:2}" ;;
  pose49b)
    # pose49 (run at commit 2b28a1b, whose validation told every held-out grid pose 0; the
    # held-out grids are told their own poses since) stopped by that validation loss after
    # epoch 5 while its samples were still getting better: 8 epochs more from its epoch 5
    over_shipped_vqvae runs/pose49b && snapshot_checkpoint runs/pose49 5
    python train.py "${FLAGS[@]}" --output-dir runs/pose49b --prior-patience 8 \
      --prior-augment-shift 0 --prior-original-weight 4 --prior-learning-rate 0.0005 \
      --prior-pose-condition true --prior-epochs 8 --prior-init runs/pose49/prior_e5.keras "${@:2}" ;;
  realism)
    python benchmark.py realism --output-dir "$2" --data-dir "$DATA" --samples 128 \
      --temperatures 1.0 --top-ks 64 --guidances 1.5 --seeds 0,1,2 \
      --feature-network-dir output/realism-validate ${3:+--snapshots "$3"} ;;
  ship)
    # RUN's epoch-EPOCH snapshot (chosen by `realism` above) as the run's prior, the sampling
    # settings chosen on the validation subjects, then the export (which copies the run's
    # hyperparameters: without this step it ships the run's training-time settings)
    RUN=${2:?ship RUN EPOCH} EPOCH=${3:?ship RUN EPOCH}
    snapshot_checkpoint "$RUN" "$EPOCH" && cp "$RUN/prior_e$EPOCH.keras" "$RUN/prior.keras"
    python - "$RUN" <<'PY'
import json, sys
path = f"{sys.argv[1]}/hyperparameters.json"
values = json.load(open(path))
values.update(temperature=1.0, top_k=64, guidance=1.25, covariate_guidance=1.5)
json.dump(values, open(path, "w"), indent=2, sort_keys=True)
PY
    python train.py --output-dir "$RUN" --export pretrained/ixi-t1-128 --overwrite ;;
  settings)
    # The sampling settings re-chosen on the validation subjects after shipping (the weights
    # stay): every sample that requests no covariate draws one training subject's age and sex
    python - <<'PY'
from brainvq.runs import pretrained
before = pretrained.set_sampling_settings("pretrained/ixi-t1-128",
                                          unconditional_covariates="drawn")
print(f"pretrained/ixi-t1-128: was {before}")
PY
    ;;
  *) echo "usage: bash docs/runs/issue49.sh aug49|aug49b|aug49c|noaug49|pose49|pose49b|realism RUN [EPOCHS]|ship RUN EPOCH|settings" >&2
     exit 2 ;;
esac
