# How jobs are run: "local" (run.pl, default), or "slurm" on a cluster.
#   train_cmd: CPU jobs (data formatting, statistics)
#   cuda_cmd:  training (GPU when --ngpu > 0)
#   decode_cmd: decoding
# For slurm, edit conf/slurm.conf (partitions, GPU option) and set cmd_backend=slurm.
cmd_backend=${cmd_backend:-local}

if [ "${cmd_backend}" = local ]; then
    export train_cmd="run.pl"
    export cuda_cmd="run.pl"
    export decode_cmd="run.pl"
elif [ "${cmd_backend}" = slurm ]; then
    export train_cmd="slurm.pl --config conf/slurm.conf"
    export cuda_cmd="slurm.pl --config conf/slurm.conf"
    export decode_cmd="slurm.pl --config conf/slurm.conf"
else
    echo "$0: unknown cmd_backend=${cmd_backend} (local or slurm)" >&2
    return 1
fi
