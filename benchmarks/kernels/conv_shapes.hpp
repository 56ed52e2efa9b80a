// Every distinct conv shape of ResNet-18 (torchvision topology) at 112x112 and
// of CifarCnn at 32x32, as NHWC inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace compressor::bench {

struct ConvShape {
  std::string name;  // the PyTorch module name(s)
  std::int64_t h, w, c, o, k, stride, pad;
  std::int64_t oh() const { return (h + 2 * pad - k) / stride + 1; }
  std::int64_t ow() const { return (w + 2 * pad - k) / stride + 1; }
  std::int64_t gemm_k() const { return k * k * c; }
  /// int8 ops (2 per multiply-add) for a batch.
  double ops(std::int64_t batch) const {
    return 2.0 * double(batch * oh() * ow()) * double(o) * double(gemm_k());
  }
};

inline std::vector<ConvShape> resnet18_112() {
  return {
      {"resnet18.conv1", 112, 112, 3, 64, 7, 2, 3},
      {"resnet18.layer1.x.convy", 28, 28, 64, 64, 3, 1, 1},
      {"resnet18.layer2.0.conv1", 28, 28, 64, 128, 3, 2, 1},
      {"resnet18.layer2.0.downsample", 28, 28, 64, 128, 1, 2, 0},
      {"resnet18.layer2.x.convy", 14, 14, 128, 128, 3, 1, 1},
      {"resnet18.layer3.0.conv1", 14, 14, 128, 256, 3, 2, 1},
      {"resnet18.layer3.0.downsample", 14, 14, 128, 256, 1, 2, 0},
      {"resnet18.layer3.x.convy", 7, 7, 256, 256, 3, 1, 1},
      {"resnet18.layer4.0.conv1", 7, 7, 256, 512, 3, 2, 1},
      {"resnet18.layer4.0.downsample", 7, 7, 256, 512, 1, 2, 0},
      {"resnet18.layer4.x.convy", 4, 4, 512, 512, 3, 1, 1},
  };
}

inline std::vector<ConvShape> cifarcnn_32() {
  return {
      {"cifarcnn.conv1", 32, 32, 3, 64, 3, 1, 1},
      {"cifarcnn.conv2", 16, 16, 64, 128, 3, 1, 1},
      {"cifarcnn.conv3", 8, 8, 128, 256, 3, 1, 1},
      {"cifarcnn.conv4", 4, 4, 256, 512, 3, 1, 1},
  };
}

}  // namespace compressor::bench
