#include "runtime/ops/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "runtime/ops/cpu/float_io.h"

namespace dp {

template <typename T>
void maxpool2d_forward(const Window2d& g, const T* x, T* y, int32_t* argmax) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), k = g.kernel, s = g.stride, pad = g.padding;
  const int64_t planes = g.batch * g.channels;
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* img = x + pl * g.plane();
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const int64_t h0 = std::max<int64_t>(oh * s - pad, 0);
      const int64_t h1 = std::min<int64_t>(oh * s - pad + k, g.height);
      for (int64_t ow = 0; ow < ow_n; ++ow, ++y, ++argmax) {
        const int64_t w0 = std::max<int64_t>(ow * s - pad, 0);
        const int64_t w1 = std::min<int64_t>(ow * s - pad + k, g.width);
        // PyTorch's scan: start at -inf on the window's first pixel, take strictly greater
        // values (first max on ties) and any NaN.
        float best = -std::numeric_limits<float>::infinity();
        int64_t at = h0 * g.width + w0;
        for (int64_t ih = h0; ih < h1; ++ih) {
          for (int64_t iw = w0; iw < w1; ++iw) {
            const int64_t i = ih * g.width + iw;
            const float v = load(img[i]);
            if (v > best || std::isnan(v)) {
              best = v;
              at = i;
            }
          }
        }
        *y = img[at];
        *argmax = static_cast<int32_t>(at);
      }
    }
  }
}

template <typename T>
void maxpool2d_backward(const Window2d& g, const T* dy, const int32_t* argmax, T* dx) {
  const int64_t planes = g.batch * g.channels, plane = g.plane(), out = g.positions();
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
