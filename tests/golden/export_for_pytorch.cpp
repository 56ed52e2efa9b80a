// Writes what tests/golden/pytorch_interop.sh hands to PyTorch: a ResNet-18
// checkpoint saved by compressor (width 0.25, 10 classes, trained-looking BN
// statistics) and, in a second file, an input (NCHW) with our eval-mode output
// for it. The script loads the checkpoint into its PyTorch ResNet-18 with
// load_state_dict(strict=True) and checks PyTorch's output on the input.
//
// Usage: export_for_pytorch OUT_DIR
#include <cstdio>
#include <exception>
#include <filesystem>

#include "compressor/io/checkpoint.hpp"
#include "compressor/models.hpp"

int main(int argc, char** argv) {
  using namespace compressor;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path out(argv[1]);
    nn::init::manual_seed(21);
    models::ResNetOptions o;
    o.width = 0.25;
    o.num_classes = 10;
    models::ResNet18 net(o);
    Rng rng(22);
    for (const auto& b : net.named_buffers()) {
      if (b.dtype == DType::f32)
        for (auto& v : b.as<float>().flat()) v = static_cast<float>(rng.uniform(0.2, 1.5));
      else
        b.as<std::int64_t>()[0] = 17;
    }
    for (const auto& p : net.named_parameters())
      if (p.name.find("bn") != std::string::npos ||
          p.name.find("downsample.1") != std::string::npos)
        for (auto& v : p.value->flat()) v = static_cast<float>(rng.uniform(0.5, 1.5));
    io::save_checkpoint(net, out / "cpp_resnet18_w025.safetensors", {{"writer", "compressor"}});

    net.eval();
    Tensor<float> x(Shape{2, 40, 40, 3});
    for (auto& v : x.flat()) v = static_cast<float>(rng.normal());
    const Tensor<float> y(net.forward(x));
    io::SafetensorsWriter w;
    w.add<float>("input", io::nhwc_to_nchw(x.view()));
    w.add<float>("output", y);
    w.write(out / "cpp_resnet18_w025_io.safetensors");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "export_for_pytorch: %s\n", e.what());
    return 1;
  }
  return 0;
}
