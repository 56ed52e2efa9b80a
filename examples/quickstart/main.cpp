// The README's example: train CifarCnn on a batch and save a checkpoint.
#include <compressor/io/checkpoint.hpp>
#include <compressor/models.hpp>
#include <compressor/nn.hpp>
#include <compressor/train.hpp>
using namespace compressor;

int main() {
  set_num_threads(2);        // OpenMP and Eigen
  nn::init::manual_seed(1);  // same model every run
  models::CifarCnn net;      // 1,557,066 parameters, NHWC input
  data::Batch batch;
  batch.inputs = Tensor<float>(Shape{128, 32, 32, 3});  // fill with images
  batch.labels = Tensor<std::int32_t>(Shape{128});      // and class indices
  nn::SoftmaxCrossEntropy loss(/*label_smoothing=*/0.1f);
  train::Sgd sgd(net, {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 5e-4f});
  train::OneCycleLr schedule(0.05f, /*total_steps=*/10);
  train::Trainer trainer(net, loss, sgd, train::Task::classification, &schedule);
  for (int step = 0; step < 10; ++step) trainer.step(batch);  // or trainer.fit(loader, ...)
  io::save_checkpoint(net, "cifar_cnn.safetensors");          // opens in PyTorch (load_state_dict)
}
