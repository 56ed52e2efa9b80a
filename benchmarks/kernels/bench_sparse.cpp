namespace compressor::bench {
void register_sparse() {}
}  // namespace compressor::bench
