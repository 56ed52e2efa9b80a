// report.html as a user sees it: Debian's headless Chromium renders a sample
// report to a screenshot, which must exist, be non-blank, and show the
// charts' colours (the SVG drew). Chromium runs with --no-sandbox (CI is root)
// and without network access to anything (the page has no URL to fetch).
#include <catch2/catch.hpp>

#include <stb_image.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "compressor/report/html.hpp"

namespace fs = std::filesystem;
using namespace compressor::report;

#ifndef COMPRESSOR_CHROMIUM
#error "COMPRESSOR_CHROMIUM must name the chromium executable"
#endif

TEST_CASE("Chromium renders report.html: non-blank, charts drawn", "[report]") {
  const fs::path dir = fs::temp_directory_path() / "compressor_test_report_render";
  fs::remove_all(dir);
  fs::create_directories(dir);
  Results r;
  r.machine = machine_info();
  for (int i = 0; i < 4; ++i) {
    Row row;
    row.name = "model " + std::to_string(i);
    row.method = i == 0 ? "baseline" : "unstructured";
    row.precision = "fp32";
    row.prune_ratio = 0.3 * i;
    row.sparsity_before_finetune = row.sparsity_after_finetune = 0.3 * i;
    row.params_total = 1000;
    row.params_nonzero = 1000 - 300 * i;
    row.file_bytes = 4'000'000 / (i + 1);
    row.latency_ms_median = 10.0 / (i + 1);
    row.threads = 2;
    row.kernel_path = "avx2";
    row.metrics = {{"top1", 90.0 - i}};
    r.put(row);
  }
  write_report_html(dir / "report.html", r, {});
  const fs::path png = dir / "shot.png";
  const std::string cmd = std::string("\"") + COMPRESSOR_CHROMIUM +
                          "\" --headless --no-sandbox --disable-gpu --hide-scrollbars "
                          "--window-size=1200,1600 --screenshot=\"" +
                          png.string() + "\" \"file://" + (dir / "report.html").string() +
                          "\" > \"" + (dir / "chromium.log").string() + "\" 2>&1";
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
  REQUIRE(fs::exists(png));
  int w = 0, h = 0, c = 0;
  stbi_uc* px = stbi_load(png.string().c_str(), &w, &h, &c, 3);
  REQUIRE(px != nullptr);
  CHECK(w == 1200);
  CHECK(h == 1600);
  long non_white = 0, blue = 0;
  for (long i = 0; i < static_cast<long>(w) * h; ++i) {
    const int R = px[3 * i], G = px[3 * i + 1], B = px[3 * i + 2];
    if (R < 240 || G < 240 || B < 240) ++non_white;
    // The first series colour, #1f77b4, of the points and bars.
    if (std::abs(R - 0x1f) < 24 && std::abs(G - 0x77) < 24 && std::abs(B - 0xb4) < 24) ++blue;
  }
  stbi_image_free(px);
  INFO("non-white pixels: " << non_white << ", series-blue pixels: " << blue);
  CHECK(non_white > w * h / 100);
  CHECK(blue > 200);
}
