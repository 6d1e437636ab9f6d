#pragma once
// The text a language model samples during training (--sample-every), as both trainers print
// it: from end-of-text, --sample-length tokens at --sample-temperature from the
// --sample-top-k most likely, seeded by --seed and the step (the same text on every rank).
#include <cstdint>
#include <string>

#include "runtime/train/train_config.h"

namespace dp {

class Module;
struct ModelEntry;

// Byte-level vocabularies (dprun prepare-text) decode to text, end-of-text as a newline and
// what a terminal would act on escaped (ByteTokenizer::printable); others (GPT-2's) start
// from GPT-2's end-of-text id and give token ids. `model` is left in training mode.
std::string sample_text(const ModelEntry& entry, Module& model, int vocab, const TrainConfig& cfg,
                        uint64_t step);

}  // namespace dp
