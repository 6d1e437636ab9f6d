#pragma once
// `dprun launch`: starts one dprun per GPU (per physical core without GPUs) through mpirun, or
// through srun inside a Slurm allocation, prints the command it runs, passes signals on and
// returns the job's exit code. Needs no MPI itself.
//
//   dprun launch [-np N|auto] [--hosts FILE | --slurm | --no-slurm] [--mpirun PATH]
//                [--mpirun-arg ARG ...] [--dry-run] -- <dprun options>

namespace dp {

int launch_main(int argc, char** argv);  // argv[1] is "launch"

}  // namespace dp
