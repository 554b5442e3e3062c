#!/usr/bin/env bash
# The prepared GPU check (DEVELOPERS.md, "The GPU machine"): run on a lent device machine,
# in the repository root, with data/mnist.npz carried (`make bench-npz` writes it).
# Each part has its own time limit so that one hang leaves the rest to run.
set -u
echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
python3 --version
python3 -c 'import jax, jaxlib; print("jax", jax.__version__, "jaxlib", jaxlib.__version__); print(jax.devices())' 2>&1
python3 -c 'import tensorflow' 2>/dev/null && echo "tensorflow: present" || echo "tensorflow: absent"
echo "== benchmark: the seed notebook's cells vs ours, full MNIST, 10 epochs"
timeout 300 python3 -m bench.train_speed --npz data/mnist.npz --epochs 10 --unroll 1 8; echo "rc=$?"
echo "== the same at float32 matmul precision 'highest' (no TF32): does the accuracy match to 4 digits?"
JAX_DEFAULT_MATMUL_PRECISION=highest timeout 200 python3 -m bench.train_speed --npz data/mnist.npz --epochs 10 --quiet; echo "rc=$?"
echo "== tuning: populations of K trials as one vmapped program (goal: 32 trials' epoch <= 3x one trial's)"
timeout 200 python3 -m bench.tune_speed --npz data/mnist.npz --trials 32 --epochs 3 --population-sizes 1 8 32 64; echo "rc=$?"
