// All layers.
#pragma once

#include "compressor/nn/activation.hpp"
#include "compressor/nn/basic_block.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/channel_plan.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/gradcheck.hpp"
#include "compressor/nn/identity.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/loss.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/nn/pooling.hpp"
#include "compressor/nn/sequential.hpp"
#include "compressor/nn/surgery.hpp"
#include "compressor/nn/temporal_pool.hpp"
