// The fixture of the quantize tool's tests (examples/quantize):
//
//   quantize_fixture make DIR    writes DIR/cnn.safetensors (a small CifarCnn
//                                with its channel plan), DIR/calib.bin (64
//                                random images in CIFAR-10's binary format)
//                                and DIR/corrupt.safetensors (not a checkpoint)
//   quantize_fixture check FILE  loads the int8 model FILE and runs it once
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "compressor/core/rng.hpp"
#include "compressor/io/atomic_file.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/quant/int8_io.hpp"
#include "support/cifar_plan.hpp"

namespace fs = std::filesystem;
using namespace compressor;

namespace {

void make(const fs::path& dir) {
  fs::create_directories(dir);
  nn::init::manual_seed(3);
  models::CifarCnn net(compressor::testing::narrow_cifar_plan(8));
  Rng rng(4);
  net.visit([&](const std::string&, nn::Module& m) {
    if (auto* bn = nn::as<nn::Normalization>(m))
      for (auto& v : bn->running_var().flat()) v = static_cast<float>(rng.uniform(0.5, 2.0));
  });
  io::save_checkpoint(net, dir / "cnn.safetensors");
  std::string bin;
  for (int i = 0; i < 64; ++i) {
    bin.push_back(static_cast<char>(i % 10));  // label, then R, G, B planes of 32x32
    for (int k = 0; k < 3 * 32 * 32; ++k) bin.push_back(static_cast<char>(rng.below(256)));
  }
  io::write_file_atomic(dir / "calib.bin", bin);
  io::write_file_atomic(dir / "corrupt.safetensors", "this is not a safetensors file");
  std::printf("wrote %s/{cnn.safetensors,calib.bin,corrupt.safetensors}\n", dir.c_str());
}

void check(const fs::path& file) {
  quant::Int8Model m = quant::load_int8_model(file);
  Tensor<float> x(Shape{2, 32, 32, 3}, 0.25f);
  const auto y = m.forward(x);
  std::printf("loaded %s: %s, %zu points, %zu float islands, output %s\n", file.c_str(),
              m.summary().model.c_str(), m.summary().points.size(), m.summary().float_layers.size(),
              y.shape().str().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc == 3 ? argv[1] : "";
    if (cmd == "make") {
      make(argv[2]);
    } else if (cmd == "check") {
      check(argv[2]);
    } else {
      std::fprintf(stderr, "usage: quantize_fixture make DIR | check FILE\n");
      return 2;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quantize_fixture: error: %s\n", e.what());
    return 1;
  }
}
