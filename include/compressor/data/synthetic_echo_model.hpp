// The model behind the synthetic echo generator (see docs/synthetic_echo.md):
// a beating left-ventricle-like cavity, dark blood inside bright speckled
// myocardium, in an ultrasound-like sector. Drawing a clip's parameters,
// its volume curve, its true EDV/ESV/EF and rendering its frames; writing
// them to video files is in synthetic_echo.hpp (FFmpeg). Core only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"

namespace compressor::data {

struct EchoModelOptions {
  int size = 112;                             ///< frame height = width, pixels
  double fps = 50;                            ///< frames per second
  double ef_min = 10, ef_max = 90;            ///< EF range (%); the distribution is documented
  double min_cycles = 1.2, max_cycles = 3.8;  ///< heart cycles shown per clip
  double min_bpm = 48, max_bpm = 110;         ///< heart rate range

  void check() const {
    require(size >= 32 && size <= 1024, "EchoModelOptions: size must be 32..1024, got ", size);
    require(fps >= 5 && fps <= 240, "EchoModelOptions: fps must be 5..240, got ", fps);
    require(ef_min >= 1 && ef_max <= 95 && ef_min < ef_max,
            "EchoModelOptions: need 1 <= ef_min < ef_max <= 95, got ", ef_min, ", ", ef_max);
    require(min_cycles >= 1 && min_cycles <= max_cycles,
            "EchoModelOptions: need 1 <= min_cycles <= max_cycles");
    require(min_bpm >= 20 && min_bpm <= max_bpm && max_bpm <= 240,
            "EchoModelOptions: need 20 <= min_bpm <= max_bpm <= 240");
  }
};

/// Everything random about one clip. Lengths are in pixels.
struct EchoClipParams {
  int size = 112;
  double fps = 50;
  std::int64_t frames = 0;
  double ef_target = 0;   ///< EF (%) the volume curve is built for
  double bpm = 0;         ///< heart rate
  double phase0 = 0;      ///< cycle phase of frame 0, in [0, 1); 0 = end-diastole
  double systole = 0.35;  ///< fraction of the cycle spent ejecting
  double cx = 0, cy = 0;  ///< cavity centre
  double angle = 0;       ///< long-axis tilt from vertical, radians
  double b_ed = 0;        ///< long semi-axis at end-diastole
  double a_ed = 0;        ///< short semi-axis at end-diastole
  double alpha = 0.25;    ///< share of the volume change taken by the long axis
  double wall_ed = 0;     ///< wall thickness at end-diastole
  double thickening = 0;  ///< relative wall thickening per unit of ejected fraction
  double blood = 0, myocardium = 0, tissue = 0;  ///< mean echo levels in [0, 1]
  double speckle = 0;                            ///< speckle depth in [0, 1]
  double noise = 0;                              ///< std of additive noise per frame
  double attenuation = 0;        ///< depth attenuation exp(-attenuation * depth / size)
  double sector_half_angle = 0;  ///< radians
  double cm_per_pixel = 0;       ///< for volumes in mL
  std::uint64_t texture_seed = 0;
};

/// The left ventricle's volume over the cycle as a fraction of EDV, for cycle
/// phase p (0 = end-diastole): cosine-shaped ejection to 1 - EF/100 during the
/// first `systole` of the cycle, then rapid filling to 75% of the stroke
/// volume, a slow diastasis to 80% and the atrial kick back to EDV.
inline double volume_fraction(double phase, double ef_percent, double systole = 0.35) {
  const double p = phase - std::floor(phase);
  const double sv = ef_percent / 100.0, esv = 1.0 - sv;
  constexpr double pi = std::numbers::pi;
  if (p < systole) return 1.0 - sv * (1.0 - std::cos(pi * p / systole)) / 2.0;
  const double u = (p - systole) / (1.0 - systole);
  if (u < 0.4) return esv + sv * 0.75 * (1.0 - std::cos(pi * u / 0.4)) / 2.0;
  if (u < 0.75) return esv + sv * (0.75 + 0.05 * (u - 0.4) / 0.35);
  return esv + sv * (0.8 + 0.2 * (1.0 - std::cos(pi * (u - 0.75) / 0.25)) / 2.0);
}

/// EF (%) drawn to resemble EchoNet-Dynamic's distribution (mean ~55,
/// std ~12, a longer tail of low EF): 80% N(60, 7), 20% N(38, 12), redrawn
/// until it falls in [ef_min, ef_max].
inline double draw_ef(Rng& rng, double ef_min, double ef_max) {
  for (;;) {
    const bool reduced = rng.uniform() < 0.2;
    const double ef = reduced ? rng.normal(38.0, 12.0) : rng.normal(60.0, 7.0);
    if (ef >= ef_min && ef <= ef_max) return ef;
  }
}

/// The ultrasound sector: apex at (size / 2, 1), radius 0.97 size. Returns
/// the distance (pixels) of (x, y) inside its border, negative outside.
inline double sector_margin(const EchoClipParams& p, double x, double y) {
  const double dx = x - p.size / 2.0, dy = y - 1.0;
  const double r = std::hypot(dx, dy), th = std::abs(std::atan2(dx, dy));
  return std::min(0.97 * p.size - r, (p.sector_half_angle - th) * r);
}

/// True when the end-diastolic outer border lies at least 2 pixels inside
/// the sector.
inline bool heart_in_sector(const EchoClipParams& p) {
  const double ao = p.a_ed + p.wall_ed, bo = p.b_ed + p.wall_ed;
  const double c = std::cos(p.angle), s = std::sin(p.angle);
  for (int k = 0; k < 72; ++k) {
    const double t = 2.0 * std::numbers::pi * k / 72.0;
    const double u = ao * std::cos(t), v = bo * std::sin(t);
    if (sector_margin(p, p.cx + c * u + s * v, p.cy - s * u + c * v) < 2.0) return false;
  }
  return true;
}

inline EchoClipParams draw_echo_clip(Rng& rng, const EchoModelOptions& opt) {
  opt.check();
  EchoClipParams p;
  const double k = opt.size / 112.0;  // all lengths are drawn for 112 pixels, then scaled
  p.size = opt.size;
  p.fps = opt.fps;
  p.ef_target = draw_ef(rng, opt.ef_min, opt.ef_max);
  p.bpm = rng.uniform(opt.min_bpm, opt.max_bpm);
  const double cycles = rng.uniform(opt.min_cycles, opt.max_cycles);
  const double period_frames = 60.0 / p.bpm * opt.fps;
  p.frames = std::max<std::int64_t>(std::llround(cycles * period_frames),
                                    std::llround(std::ceil(opt.min_cycles * period_frames)));
  p.phase0 = rng.uniform();
  p.systole = std::clamp(0.30 * p.bpm / 60.0, 0.28, 0.45);  // ejection lasts ~0.3 s
  p.b_ed = rng.uniform(28.0, 40.0) * k;
  p.a_ed = p.b_ed * rng.uniform(0.45, 0.65);
  p.alpha = rng.uniform(0.15, 0.35);
  p.wall_ed = rng.uniform(5.0, 9.0) * k;
  p.thickening = rng.uniform(0.5, 1.0);
  p.sector_half_angle = rng.uniform(36.0, 44.0) * std::numbers::pi / 180.0;
  // Position and tilt: redrawn until the end-diastolic heart lies inside the
  // sector; a heart that does not fit after some tries is made smaller.
  for (int attempt = 1;; ++attempt) {
    p.angle = rng.uniform(-20.0, 20.0) * std::numbers::pi / 180.0;
    const double reach = p.b_ed + p.wall_ed;
    p.cx = opt.size / 2.0 + rng.uniform(-6.0, 6.0) * k;
    p.cy = rng.uniform(std::min(10.0 * k + reach, opt.size - 6.0 * k - reach),
                       opt.size - 6.0 * k - reach);
    if (heart_in_sector(p)) break;
    if (attempt % 16 == 0) p.a_ed *= 0.95, p.b_ed *= 0.95, p.wall_ed *= 0.95;
  }
  p.blood = rng.uniform(0.03, 0.08);
  p.myocardium = rng.uniform(0.55, 0.9);
  p.tissue = rng.uniform(0.22, 0.38);
  p.speckle = rng.uniform(0.3, 0.6);
  p.noise = rng.uniform(0.01, 0.04);
  p.attenuation = rng.uniform(0.1, 0.5);
  p.cm_per_pixel = 0.13 / k;
  p.texture_seed = rng();
  return p;
}

/// Cavity semi-axes and wall thickness at one frame.
struct CavityShape {
  double a = 0, b = 0, wall = 0;
};

inline double cycle_phase(const EchoClipParams& p, std::int64_t frame) {
  return p.phase0 + double(frame) / p.fps * p.bpm / 60.0;
}

/// The volume fraction r = V / EDV sets b = b_ed r^alpha and
/// a = a_ed r^((1 - alpha) / 2), so a^2 b (the ellipsoid volume) is r times
/// its end-diastolic value; the wall thickens as the cavity empties.
inline CavityShape cavity_at(const EchoClipParams& p, std::int64_t frame) {
  const double r = volume_fraction(cycle_phase(p, frame), p.ef_target, p.systole);
  return {p.a_ed * std::pow(r, (1.0 - p.alpha) / 2.0), p.b_ed * std::pow(r, p.alpha),
          p.wall_ed * (1.0 + p.thickening * (1.0 - r))};
}

/// Single-plane area-length volume, V = 8 A^2 / (3 pi L), of an elliptical
/// cavity with semi-axes a (short) and b (long) in pixels, in mL. For an
/// ellipse it equals the prolate ellipsoid's (4/3) pi a^2 b.
inline double area_length_volume_ml(double a, double b, double cm_per_pixel) {
  const double area = std::numbers::pi * a * b * cm_per_pixel * cm_per_pixel;
  const double length = 2.0 * b * cm_per_pixel;
  return 8.0 * area * area / (3.0 * std::numbers::pi * length);
}

/// The clip's labels: EDV and ESV are the largest and smallest area-length
/// volumes over its frames, EF = (EDV - ESV) / EDV * 100.
struct EchoTruth {
  double edv_ml = 0, esv_ml = 0, ef = 0;
};

inline EchoTruth echo_truth(const EchoClipParams& p) {
  EchoTruth t{0, 1e300, 0};
  for (std::int64_t f = 0; f < p.frames; ++f) {
    const CavityShape s = cavity_at(p, f);
    const double v = area_length_volume_ml(s.a, s.b, p.cm_per_pixel);
    t.edv_ml = std::max(t.edv_ml, v);
    t.esv_ml = std::min(t.esv_ml, v);
  }
  t.ef = (t.edv_ml - t.esv_ml) / t.edv_ml * 100.0;
  return t;
}

/// Renders the frames of one clip. Per-clip maps (sector, attenuation, the
/// static speckle texture, background structure) are built once.
class EchoRenderer {
 public:
  explicit EchoRenderer(const EchoClipParams& p) : p_(p), n_(p.size) {
    const auto count = static_cast<std::size_t>(n_) * static_cast<std::size_t>(n_);
    Rng rng(p.texture_seed);
    // Static map: sector mask times depth attenuation (apex at the top centre).
    gain_.resize(count);
    for (int y = 0; y < n_; ++y)
      for (int x = 0; x < n_; ++x) {
        const double edge = sector_margin(p, x + 0.5, y + 0.5);
        const double depth = std::hypot(x + 0.5 - n_ / 2.0, y - 0.5);
        gain_[at(x, y)] = float(std::clamp(edge, 0.0, 1.0) * std::exp(-p.attenuation * depth / n_));
      }
    // Speckle: the magnitude of a smoothed complex Gaussian field (Rayleigh,
    // elongated laterally), mean 1, on a grid with a margin so the texture
    // can follow the wall's motion.
    tn_ = n_ + 2 * kMargin;
    const auto tcount = static_cast<std::size_t>(tn_) * static_cast<std::size_t>(tn_);
    std::vector<float> re(tcount), im(tcount);
    for (std::size_t i = 0; i < tcount; ++i)
      re[i] = float(rng.normal()), im[i] = float(rng.normal());
    texture_.resize(tcount);
    double mean = 0;
    for (int y = 0; y < tn_; ++y)
      for (int x = 0; x < tn_; ++x) {
        double sr = 0, si = 0;  // 5 taps across, 2 along the beam
        for (int d = -2; d <= 2; ++d)
          for (int e = 0; e <= 1; ++e) {
            const std::size_t j = tidx(std::clamp(x + d, 0, tn_ - 1), std::min(y + e, tn_ - 1));
            const double w = d == 0 ? 1.0 : (d == 1 || d == -1 ? 0.7 : 0.35);
            sr += w * re[j];
            si += w * im[j];
          }
        const double mag = std::hypot(sr, si);
        texture_[tidx(x, y)] = float(mag);
        mean += mag;
      }
    mean /= double(tcount);
    for (auto& v : texture_) v = float(v / mean);
    // Per-frame noise: a table read at a random offset per frame.
    noise_.resize(count + 4096);
    for (auto& v : noise_) v = float(rng.normal() * p.noise);
    offsets_.resize(static_cast<std::size_t>(std::max<std::int64_t>(p.frames, 1)));
    for (auto& o : offsets_) o = static_cast<std::size_t>(rng.below(4096));
    cos_ = std::cos(p.angle);
    sin_ = std::sin(p.angle);
    // Each pixel in the cavity's frame: u across, v along the long axis.
    u_.resize(count);
    v_.resize(count);
    for (int y = 0; y < n_; ++y)
      for (int x = 0; x < n_; ++x) {
        const double dx = x + 0.5 - p.cx, dy = y + 0.5 - p.cy;
        u_[at(x, y)] = float(cos_ * dx - sin_ * dy);
        v_[at(x, y)] = float(sin_ * dx + cos_ * dy);
      }
  }

  /// Writes frame f (size x size grey, row-major) into out.
  void render(std::int64_t f, std::span<std::uint8_t> out) const {
    require<ShapeError>(std::ssize(out) == std::int64_t(n_) * n_, "EchoRenderer: output has ",
                        out.size(), " bytes, expected ", n_ * n_);
    const CavityShape s = cavity_at(p_, f);
    const float ia2 = float(1.0 / (s.a * s.a)), ib2 = float(1.0 / (s.b * s.b));
    const float oa = float(s.a + s.wall), ob = float(s.b + s.wall);
    const float oa2 = 1.f / (oa * oa), ob2 = 1.f / (ob * ob);
    const float min_in = float(std::min(s.a, s.b)), min_out = std::min(oa, ob);
    const float track_a = float(p_.a_ed / s.a), track_b = float(p_.b_ed / s.b);
    const float* noise = noise_.data() + offsets_[static_cast<std::size_t>(f) % offsets_.size()];
    const float spk = float(p_.speckle), blood = float(p_.blood), tissue = float(p_.tissue);
    const float myo = float(p_.myocardium), c = float(cos_), sn = float(sin_);
    const float cx = float(p_.cx) + kMargin, cy = float(p_.cy) + kMargin;
    for (std::size_t i = 0; i < out.size(); ++i) {
      const float g = gain_[i];
      if (g <= 0.f) {
        out[i] = 0;
        continue;
      }
      const float u = u_[i], v = v_[i];
      const float rho_in = std::sqrt(u * u * ia2 + v * v * ib2);
      const float rho_out = std::sqrt(u * u * oa2 + v * v * ob2);
      // Approximate signed distances (pixels) to the inner and outer borders.
      const float in_blood = 1.f - smooth((rho_in - 1.f) * min_in);
      const float outside = smooth((rho_out - 1.f) * min_out);
      // Walls across the beam (apex, base) echo more than walls along it.
      const float across = std::abs(v) / (std::abs(u) + std::abs(v) + 1e-3f);
      const float wall = myo * (0.65f + 0.35f * across);
      const float level = blood * in_blood + wall * (1.f - in_blood - outside) + tissue * outside;
      // The speckle texture moves with the wall near the heart.
      const float follow = std::clamp(rho_out - 1.f, 0.f, 1.f);
      const float tu = u * (track_a + (1.f - track_a) * follow);
      const float tv = v * (track_b + (1.f - track_b) * follow);
      const int tx = std::clamp(int(c * tu + sn * tv + cx), 0, tn_ - 1);
      const int ty = std::clamp(int(-sn * tu + c * tv + cy), 0, tn_ - 1);
      const float sp = texture_[tidx(tx, ty)];
      const float val = level * (1.f - spk + spk * sp) * g + noise[i];
      out[i] = static_cast<std::uint8_t>(std::clamp(val * 255.f + 0.5f, 0.f, 255.f));
    }
  }

  const EchoClipParams& params() const { return p_; }

 private:
  static constexpr int kMargin = 16;
  static float smooth(float d) {  // 0 for d <= -1, 1 for d >= 1 (pixels), smoothstep between
    const float t = std::clamp((d + 1.f) * 0.5f, 0.f, 1.f);
    return t * t * (3.f - 2.f * t);
  }
  std::size_t at(int x, int y) const { return std::size_t(y) * std::size_t(n_) + std::size_t(x); }
  std::size_t tidx(int x, int y) const {
    return std::size_t(y) * std::size_t(tn_) + std::size_t(x);
  }

  EchoClipParams p_;
  int n_;
  int tn_ = 0;
  double cos_ = 1, sin_ = 0;
  std::vector<float> gain_, texture_, noise_, u_, v_;
  std::vector<std::size_t> offsets_;
};

}  // namespace compressor::data
