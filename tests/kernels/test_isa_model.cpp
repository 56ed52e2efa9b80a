// A model quantized once computes bit-identical outputs on every ISA path:
// PTQ (prepare -> calibrate -> convert) once, then the int8 model's forward
// on each path this CPU supports against the scalar path, bit for bit.
#include <catch2/catch.hpp>
#include <compressor/kernels/isa.hpp>
#include <compressor/models.hpp>
#include <compressor/quant/convert.hpp>
#include <cstring>
#include <memory>

#include "quant/quant_test_util.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
namespace k = compressor::kernels;

TEST_CASE("a model quantized once computes bit-identical outputs on every path", "[isa]") {
  Rng rng(31);
  nn::init::manual_seed(13);
  struct Case {
    std::unique_ptr<nn::Module> model;
    Shape input;
  };
  std::vector<Case> cases;
  cases.push_back({std::make_unique<models::CifarCnn>(), Shape{4, 32, 32, 3}});
  models::ResNetOptions ro;
  ro.width = 0.25;
  ro.num_classes = 10;
  cases.push_back({std::make_unique<models::ResNet18>(ro), Shape{2, 40, 40, 3}});
  for (auto& c : cases) {
    compressor::testing::randomize_batchnorms(*c.model, rng);
    quant::Int8Model int8 = compressor::testing::ptq_int8(*c.model, c.input, 2, 5);
    compressor::testing::RandomBatches data(c.input, 1, 77);
    const Tensor<float> x = data.batch(0);
    Tensor<float> want;
    {
      k::ScopedKernelPath scope(k::Path::scalar);
      want = Tensor<float>(int8.forward(x));
    }
    for (k::Path p : k::supported_paths()) {
      k::ScopedKernelPath scope(p);
      const Tensor<float> got(int8.forward(x));
      INFO(c.model->type_name() << " on path " << k::path_name(p));
      REQUIRE(got.shape() == want.shape());
      CHECK(std::memcmp(got.data(), want.data(), sizeof(float) * std::size_t(got.numel())) == 0);
    }
  }
}
