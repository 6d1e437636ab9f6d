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

}  // namespace dp
