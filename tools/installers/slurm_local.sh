#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing the recipes' cmd_backend=slurm.
#
#   slurm_local.sh start  DIR   install slurm-wlm + munge (apt, as root) if missing, write
#                               DIR/slurm.conf for this host, start munged, slurmctld and
#                               slurmd, wait until the node is idle
#   slurm_local.sh stop   DIR   stop the daemons started in DIR (by their pid files)
#   slurm_local.sh status DIR   sinfo of the cluster in DIR
#
# Everything lives in DIR (config, munge key and socket, state, logs, pid files): nothing
# in /etc is changed, a system-wide munged or Slurm is left alone, and the ports are two free
# ones. Clients use the cluster with `export SLURM_CONF=DIR/slurm.conf` (start prints it).
# Exit status: 0 done, 1 failed (daemon logs are printed), 2 cannot run here (not root, no
# apt, packages missing): the reason is on the line starting "SKIP:".
set -euo pipefail

usage() { echo "Usage: $0 start|stop|status DIR" >&2; exit 1; }
[ $# -eq 2 ] || usage
action=$1
dir=$2
skip() { echo "SKIP: $*" >&2; exit 2; }
die() { echo "ERROR: $*" >&2; exit 1; }

stop_daemons() {  # cancel jobs left; kill by pid file, wait for exit
    local name pid n
    if [ -f "${dir}/slurmctld.pid" ] && [ -f "${dir}/slurm.conf" ]; then
        export SLURM_CONF="${dir}/slurm.conf"
        scancel --user "$(id -un)" 2>/dev/null || true
        for n in $(seq 50); do
            [ -z "$(squeue -h 2>/dev/null || true)" ] && break
            sleep 0.2
        done
    fi
    for name in slurmd slurmctld munged; do
        [ -f "${dir}/${name}.pid" ] || continue
        pid=$(cat "${dir}/${name}.pid" 2>/dev/null || true)
        if [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null; then
            kill "${pid}" 2>/dev/null || true
            for n in $(seq 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
            kill -0 "${pid}" 2>/dev/null && kill -9 "${pid}" 2>/dev/null || true
        fi
        rm -f "${dir}/${name}.pid"
    done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port_pair() {  # first P in 6817, 6827, ... with P and P+1 free
    local p
    for p in $(seq 6817 10 7817); do
        if port_free "${p}" && port_free $((p + 1)); then echo "${p}"; return 0; fi
    done
    return 1
}

show_logs() {
    local f
    for f in "${dir}"/{munged,slurmctld,slurmd}.log; do
        [ -f "${f}" ] && { echo "== ${f}" >&2; tail -n 20 "${f}" >&2; }
    done
    return 0
}

start() {
    [ "$(id -u)" = 0 ] || skip "not root: a one-node Slurm needs root to run slurmd and to install slurm-wlm"
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
        command -v apt-get >/dev/null || skip "slurm-wlm/munge missing and no apt-get to install them"
        echo "Installing slurm-wlm and munge with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
            || skip "apt-get install slurm-wlm munge failed (no network or no such packages)"
    fi
    if [ -f "${dir}/slurmctld.pid" ] || [ -f "${dir}/slurmd.pid" ]; then
        die "${dir}: daemons already started there (run: $0 stop ${dir})"
    fi
    mkdir -p "${dir}"/{spool,state}
    dir=$(cd "${dir}" && pwd)
    chmod 755 "${dir}"  # munged: the socket dir must be searchable by clients
    # On any failure from here on: logs, then stop what was started.
    trap 'rc=$?; if [ ${rc} -ne 0 ]; then show_logs; stop_daemons; fi; exit ${rc}' EXIT

    # munge: own key and socket in DIR (munged refuses keys/dirs others can write).
    if [ ! -f "${dir}/munge.key" ]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile "${dir}/munge.key" --force >/dev/null
        else  # munge < 0.5.14
            dd if=/dev/urandom of="${dir}/munge.key" bs=1024 count=1 status=none
        fi
    fi
    chmod 600 "${dir}/munge.key"
    munged --force --key-file "${dir}/munge.key" --socket "${dir}/munge.socket" \
        --pid-file "${dir}/munged.pid" --log-file "${dir}/munged.log" \
        --seed-file "${dir}/munged.seed" --num-threads 2
    local n
    for n in $(seq 50); do [ -S "${dir}/munge.socket" ] && break; sleep 0.1; done
    [ -S "${dir}/munge.socket" ] || die "munged did not start"

    # The node as slurmd sees it (CPUs, sockets, cores, memory); memory with headroom so
    # that the node is never refused for having less than configured.
    local host node mem port
    host=$(hostname -s)
    node=$(slurmd -C | head -n 1)
    [[ "${node}" == NodeName=* ]] || die "slurmd -C printed no node line: ${node}"
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<< "${node}")
    mem=$((mem * 9 / 10))
    local cpus; cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<< "${node}")
    node=$(sed -e "s/^NodeName=[^ ]*/NodeName=${host}/" -e "s/RealMemory=[0-9]*/RealMemory=${mem}/" \
        <<< "${node}")
    port=$(free_port_pair) || die "no two free ports in 6817..7818"
    cat > "${dir}/slurm.conf.tmp" <<EOF
# One-node cluster written by tools/installers/slurm_local.sh
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${port}
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=${dir}/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SlurmUser=root
SlurmdUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
ReturnToService=2
MpiDefault=none
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/slurmctld.log
SlurmdLogFile=${dir}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=5
${node% UpTime=*} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    mv "${dir}/slurm.conf.tmp" "${dir}/slurm.conf"
    export SLURM_CONF="${dir}/slurm.conf"
    slurmctld -c -f "${SLURM_CONF}"
    slurmd -f "${SLURM_CONF}" -N "${host}"
    local state=""
    for n in $(seq 60); do
        state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
        [ "${state}" = idle ] && break
        sleep 0.5
    done
    [ "${state}" = idle ] || die "node not idle after 30 s (state: '${state:-no answer}')"
    trap - EXIT
    echo "export SLURM_CONF=${SLURM_CONF}"
}

case "${action}" in
    start) start ;;
    stop) stop_daemons ;;
    status) SLURM_CONF="${dir}/slurm.conf" sinfo ;;
    *) usage ;;
esac
