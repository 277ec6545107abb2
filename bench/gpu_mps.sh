# CUDA MPS for the GPU run (sourced by bench/gpu.sh): one daemon of this user's, so that the
# run's builds, side by side in separate processes, run their kernels on the GPU at once.
#
# Why: without MPS a GPU time-slices between processes, one context at a time. The GAN and the
# optimizer groups replay their steps as CUDA graphs, which keep a GPU's timeline full with
# small kernels (on an H200 a GAN step replayed in 1.8 to 2.0 ms for 1.7 ms of kernels), so
# time-sliced, each chain's GPU time adds to the others'. Their kernels occupy a few of the
# GPU's SMs (132 on an H100 SXM or an H200; batches of 32 to 200), so under MPS they can overlap.
# Nothing of the GPU's settings changes (compute mode, clocks and MIG stay as they are): the
# daemon is an ordinary process of this user with its pipes under the run's work folder, and a
# CUDA client that cannot reach it runs without MPS, as it would have.
#
#   mps_start PYTHON DIR   start the daemon (pipes and logs under DIR); keep it only if a CUDA
#                          client then works through it; prints one line saying which
#   mps_stop               quit the daemon this shell started, if any

# A CUDA client: a kernel, read back. Under MPS it makes the daemon start its server.
MPS_PROBE="import torch; assert torch.ones(8, device='cuda').add(1).sum().item() == 16"

mps_start() {  # mps_start PYTHON DIR
  local py=$1 dir=$2 servers
  if ! command -v nvidia-cuda-mps-control > /dev/null 2>&1; then
    mps_off "nvidia-cuda-mps-control not found"; return
  fi
  export CUDA_MPS_PIPE_DIRECTORY="$dir/pipe" CUDA_MPS_LOG_DIRECTORY="$dir/log"
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  # Its own files for the daemon's output: a daemon holding the command's stdout open could
  # keep the device call from returning.
  if ! nvidia-cuda-mps-control -d < /dev/null > "$dir/log/start.txt" 2>&1; then
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY  # nothing to quit
    mps_off "the daemon did not start, see mps-log/start.txt"; return
  fi
  # 60 s: a client that cannot get a server could otherwise hang the run.
  if ! timeout 60 "$py" -c "$MPS_PROBE"; then
    mps_off "a CUDA client failed under the daemon"; return
  fi
  # A client that could not reach the daemon ran without MPS: then no server was started.
  servers=$(echo get_server_list | timeout 20 nvidia-cuda-mps-control 2> /dev/null)
  if [ -z "$servers" ]; then
    mps_off "the probe ran without an MPS server"; return
  fi
  echo "MPS on: server $servers, pipes in $CUDA_MPS_PIPE_DIRECTORY"
}

mps_off() {  # mps_off REASON: quit the daemon, if started, say why MPS is off; status 1
  mps_stop
  echo "MPS off: $1 (the builds time-slice the GPU)"
  return 1
}

mps_stop() {  # quit the daemon started by mps_start in this shell, if any
  [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] || return 0
  echo quit | timeout 20 nvidia-cuda-mps-control > /dev/null 2>&1
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
