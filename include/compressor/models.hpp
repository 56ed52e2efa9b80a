// All models.
#pragma once

#include "compressor/models/cifar_cnn.hpp"
#include "compressor/models/ef_regressor.hpp"
#include "compressor/models/resnet.hpp"
