#pragma once
// The training and held-out data of a run, opened and checked against the model the same way
// by the DDP Trainer and the DataParallel trainer: the model trains on this kind of data,
// evaluation has a split, sampling has a text model. Throws dp::Error naming the option.
#include "runtime/data/open_data.h"
#include "runtime/train/train_config.h"

namespace dp {

struct ModelEntry;

// sequence_length: tokens per sample of next-token models, 0 for the others.
DataSplits open_training_data(const TrainConfig& cfg, const ModelEntry& entry,
                              size_t sequence_length);

// Every one of `ranks` ranks (or replicas: `ranks_name`) needs at least one training sample.
// Checked before the sampler's own check, which knows neither the option nor what a sample
// is: "--data tokens:x.bin holds 10 tokens: 1 window of --context 8 + 1, fewer than the 2
// ranks". Throws dp::Error naming --data.
void check_samples_for_ranks(const TrainConfig& cfg, const Dataset& train, size_t ranks,
                             const char* ranks_name);

}  // namespace dp
