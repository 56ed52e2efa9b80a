// Training: optimizers, learning-rate schedules, metrics and the training loop.
#pragma once

#include "compressor/train/bn_recalibration.hpp"
#include "compressor/train/fidelity.hpp"
#include "compressor/train/metrics.hpp"
#include "compressor/train/optimizer.hpp"
#include "compressor/train/progress.hpp"
#include "compressor/train/schedule.hpp"
#include "compressor/train/trainer.hpp"
#include "compressor/train/weight_average.hpp"
