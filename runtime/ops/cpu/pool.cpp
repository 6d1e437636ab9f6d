#include "runtime/ops/cpu/pool.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "runtime/ops/cpu/float_io.h"

namespace dp {

using cpu_io::load;
using cpu_io::store;

namespace {

// PyTorch's scan of one window, rows [h0, h1) and columns [w0, w1) of a plane `w` wide:
// start at -inf on the window's first pixel, take strictly greater values (the first
// maximum wins a tie) and any NaN; a NaN, once taken, is only replaced by a later NaN.
// Returns the chosen pixel's index in the plane.
//
// Branch-free on purpose: on real activations "greater?" is a coin toss, and the branches a
// compiler makes of a plain select cost more than the rest of the scan (2.5x here). The
// index is chosen with integer masks and the running maximum kept with max(), whose only
// dependency chain is the max itself. K > 0 fixes the window size at compile time (for
// windows inside the image), which lets the scan unroll: another 1.8x.
template <int K, typename T>
int64_t scan_window(const T* img, int64_t w, int64_t h0, int64_t h1, int64_t w0, int64_t w1) {
  if constexpr (K > 0) {
    h1 = h0 + K;
    w1 = w0 + K;
  }
  float best = -std::numeric_limits<float>::infinity();
  int64_t at = h0 * w + w0;
  int64_t no_nan_yet = -1;  // all ones until a NaN is taken
  for (int64_t ih = h0; ih < h1; ++ih) {
    for (int64_t iw = w0; iw < w1; ++iw) {
      const int64_t p = ih * w + iw;
      const float v = load(img[p]);
      const int64_t nan = -static_cast<int64_t>(v != v);
      const int64_t take = (-static_cast<int64_t>(v > best) & no_nan_yet) | nan;
      no_nan_yet &= ~nan;
      best = std::max(best, v);  // ignores a NaN v: no_nan_yet stands in for it
      at = (p & take) | (at & ~take);
    }
  }
  return at;
}

template <int K, typename T>
void maxpool_planes(const Window2d& g, const T* x, T* y, int32_t* argmax) {
  // Sizes in locals: through `g` the compiler would reload them after every store.
  const int64_t h = g.height, w = g.width, oh_n = g.out_h(), ow_n = g.out_w();
  const int64_t k = g.kernel, s = g.stride, pad = g.padding, planes = g.batch * g.channels;
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* img = x + pl * h * w;
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const int64_t h0 = std::max<int64_t>(oh * s - pad, 0);
      const int64_t h1 = std::min<int64_t>(oh * s - pad + k, h);
      for (int64_t ow = 0; ow < ow_n; ++ow, ++y, ++argmax) {
        const int64_t w0 = std::max<int64_t>(ow * s - pad, 0);
        const int64_t w1 = std::min<int64_t>(ow * s - pad + k, w);
        const bool inside = h1 - h0 == k && w1 - w0 == k;
        // The unrolled scan for whole windows, the general one at the borders (the same call
        // when K is 0).
        // NOLINTNEXTLINE(bugprone-branch-clone)
        const int64_t at = K > 0 && inside ? scan_window<K>(img, w, h0, h1, w0, w1)
                                           : scan_window<0>(img, w, h0, h1, w0, w1);
        *y = img[at];
        *argmax = static_cast<int32_t>(at);
      }
    }
  }
}

// The common 2x2 window at stride 2 without padding (every window inside the image), one
// output row at a time: four candidates per output in PyTorch's order. The compiler
// vectorises this loop (the selects become blends); its scalar remainder, though, compiles
// to branches that mispredict on every other element, so rows are run in whole blocks of
// kRowBlock outputs and a short tail goes through a padded copy (4x the general scan on
// 28x28 images). The first candidate is always taken from the -inf start (if it is -inf it
// stays the first pixel anyway); after it, strictly greater or NaN, as in scan_window.
constexpr int64_t kRowBlock = 8;

template <typename T>
[[gnu::noinline]] void pool_row_2x2(int64_t ow_n, const T* __restrict__ r0,
                                    const T* __restrict__ r1, int32_t base, int32_t w,
                                    T* __restrict__ y, int32_t* __restrict__ argmax) {
  for (int64_t ow = 0; ow < ow_n; ++ow) {
    const int32_t i = base + 2 * static_cast<int32_t>(ow);
    const T tb = r0[2 * ow + 1], tc = r1[2 * ow], td = r1[2 * ow + 1];
    T top = r0[2 * ow];
    float best = load(top);
    int32_t at = i;
    const float b = load(tb), c = load(tc), d = load(td);
    bool take = (b > best) | (b != b);
    best = take ? b : best;
    top = take ? tb : top;
    at = take ? i + 1 : at;
    take = (c > best) | (c != c);
    best = take ? c : best;
    top = take ? tc : top;
    at = take ? i + w : at;
    take = (d > best) | (d != d);
    top = take ? td : top;
    at = take ? i + w + 1 : at;
    y[ow] = top;
    argmax[ow] = at;
  }
}

template <typename T>
void maxpool_2x2_stride2(const Window2d& g, const T* x, T* y, int32_t* argmax) {
  const int64_t h = g.height, w = g.width, oh_n = g.out_h(), ow_n = g.out_w();
  const int64_t planes = g.batch * g.channels;
  const int64_t whole = ow_n / kRowBlock * kRowBlock, tail = ow_n - whole;
  const int32_t w32 = static_cast<int32_t>(w);
  T t0[2 * kRowBlock] = {}, t1[2 * kRowBlock] = {}, ty[kRowBlock];
  int32_t ta[kRowBlock];
  const T* x_end = x + planes * h * w;
  const T* y_end = y + planes * oh_n * ow_n;
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* img = x + pl * h * w;
    for (int64_t oh = 0; oh < oh_n; ++oh, y += ow_n, argmax += ow_n) {
      const T* r0 = img + 2 * oh * w;
      const T* r1 = r0 + w;
      const int32_t base = static_cast<int32_t>(2 * oh * w);
      pool_row_2x2(whole, r0, r1, base, w32, y, argmax);
      if (tail == 0) continue;
      if (whole > 0) {
        // The last block again, ending at the row's end: the outputs it shares with the
        // block before are written twice with the same values. Cheaper than the copies below
        // (which took 60% of the pooling on 28x28 images, with 14 outputs a row).
        const int64_t at = ow_n - kRowBlock;
        pool_row_2x2(kRowBlock, r0 + 2 * at, r1 + 2 * at, base + 2 * static_cast<int32_t>(at), w32,
                     y + at, argmax + at);
        continue;
      }
      if (x_end - r0 >= w + 2 * kRowBlock && y_end - y >= kRowBlock) {
        // A row shorter than a block (7 outputs on 14x14 images) where the tensor goes on
        // past it: the block reads on into the rows below and writes garbage into the
        // outputs after this row's, which the rows after overwrite (they run later).
        pool_row_2x2(kRowBlock, r0, r1, base, w32, y, argmax);
        continue;
      }
      // The indices come from base and w, not from where the pixels sit: the copy is
      // transparent. Its padding (zeros) produces outputs that are dropped.
      std::copy(r0 + 2 * whole, r0 + 2 * ow_n, t0);
      std::copy(r1 + 2 * whole, r1 + 2 * ow_n, t1);
      pool_row_2x2(kRowBlock, t0, t1, base + 2 * static_cast<int32_t>(whole), w32, ty, ta);
      std::copy(ty, ty + tail, y + whole);
      std::copy(ta, ta + tail, argmax + whole);
    }
  }
}

}  // namespace

template <typename T>
void maxpool2d_forward(const Window2d& g, const T* x, T* y, int32_t* argmax) {
  if (g.kernel == 2 && g.stride == 2 && g.padding == 0) return maxpool_2x2_stride2(g, x, y, argmax);
  switch (g.kernel) {
    case 2:
      return maxpool_planes<2>(g, x, y, argmax);
    case 3:
      return maxpool_planes<3>(g, x, y, argmax);
    default:
      return maxpool_planes<0>(g, x, y, argmax);
  }
}

template <typename T>
void maxpool2d_backward(const Window2d& g, const T* dy, const int32_t* argmax, T* dx) {
  const int64_t planes = g.batch * g.channels, plane = g.plane(), out = g.positions();
  if (g.stride >= g.kernel) {
    // Windows do not overlap: each pixel is some window's maximum at most once, and its
    // gradient is copied, not summed (and not rounded).
    // Plane by plane, so that the scatter lands in lines the zeroing just brought in.
    for (int64_t pl = 0; pl < planes; ++pl, dy += out, argmax += out, dx += plane) {
      std::fill(dx, dx + plane, T{});
      for (int64_t o = 0; o < out; ++o) dx[argmax[o]] = dy[o];
    }
    return;
  }
  // Overlapping windows can send several gradients to one pixel: sum them in float32.
  thread_local std::vector<float> acc;
  acc.resize(static_cast<size_t>(plane));
  for (int64_t pl = 0; pl < planes; ++pl, dy += out, argmax += out, dx += plane) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t o = 0; o < out; ++o) acc[static_cast<size_t>(argmax[o])] += load(dy[o]);
    for (int64_t i = 0; i < plane; ++i) dx[i] = store<T>(acc[static_cast<size_t>(i)]);
  }
}

template void maxpool2d_forward<float>(const Window2d&, const float*, float*, int32_t*);
template void maxpool2d_forward<bf16>(const Window2d&, const bf16*, bf16*, int32_t*);
template void maxpool2d_backward<float>(const Window2d&, const float*, const int32_t*, float*);
template void maxpool2d_backward<bf16>(const Window2d&, const bf16*, const int32_t*, bf16*);

}  // namespace dp
