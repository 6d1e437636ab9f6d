#pragma once
// Preemption (Slurm's --signal=B:USR1@60, scancel, a Ctrl-C, a scheduler's SIGTERM): the first
// SIGTERM, SIGINT or SIGUSR1 only sets a flag, which the ranks agree on at the next
// optimizer-step boundary (it travels with the step's loss all-reduce), so that all of them
// stop after the same step and rank 0 writes a checkpoint. A second signal ends the process
// at once (exit 128 + signal), for a user who does not want to wait.
namespace dp {

// Installs the handlers (idempotent). `rank` is named in the handler's messages.
void install_preemption_handlers(int rank);
// Back to the default actions (a run that does not train: evaluation only); a signal
// received meanwhile takes its default effect now.
void uninstall_preemption_handlers();
// Whether the run writes a checkpoint when it stops (--checkpoint-dir): the handler's
// message says so, or says that nothing will be saved. Before this is called (the options are
// not read yet) it promises neither.
void set_preemption_checkpointing(bool checkpoint);
// From now on the handler says nothing (the signal is still recorded, a second one still
// exits): the job is being aborted for another reason, and mpirun's SIGTERM to the ranks is
// not a preemption to announce.
void quiet_preemption_messages();
// The first signal received (SIGTERM, SIGINT or SIGUSR1), or 0.
int preemption_signal();
// "SIGTERM", "SIGINT", "SIGUSR1", or "signal N".
const char* signal_name(int sig);
// Tests: forget a received signal.
void reset_preemption_for_test();

}  // namespace dp
