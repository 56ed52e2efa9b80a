// Pruning (docs/pruning.md): unstructured masks and policies, masked
// fine-tuning, schedules, channel dependency groups and structured pruning,
// sparse deploy-time layers, reports.
#pragma once

#include "compressor/prune/channel.hpp"
#include "compressor/prune/finalize.hpp"
#include "compressor/prune/groups.hpp"
#include "compressor/prune/mask.hpp"
#include "compressor/prune/masked_training.hpp"
#include "compressor/prune/report.hpp"
#include "compressor/prune/schedule.hpp"
#include "compressor/prune/selection.hpp"
#include "compressor/prune/sparse_layers.hpp"
#include "compressor/prune/unstructured.hpp"
