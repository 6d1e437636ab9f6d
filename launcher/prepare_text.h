#pragma once
// `dprun prepare-text`: plain text -> byte-level token files (llm.c's format) for training
// a language model. It needs no MPI and runs before MPI is initialised.
//
//   dprun prepare-text --input PATH [--input PATH ...] --output train.bin
//                      --val-output val.bin [--val-fraction 0.1] [--doc-separator %]

namespace dp {

// argv[1] is "prepare-text". Prints what it wrote and returns 0, or prints
// "dprun: error: <what>" on stderr and returns 1.
int prepare_text_main(int argc, char** argv);

}  // namespace dp
