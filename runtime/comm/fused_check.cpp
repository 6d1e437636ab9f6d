#include "runtime/comm/fused_check.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "runtime/comm/mpi_fingerprint.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"

namespace dp {
namespace {

constexpr uint32_t kNoPayload = 0;
constexpr uint32_t kMixed = 0xffffffffu;  // payloads of different kinds met: garbage

struct Message {
  uint64_t hash_max = 0;      // max over the ranks of hash
  uint64_t hash_not_min = 0;  // max over the ranks of ~hash, i.e. ~min
  uint32_t kind = kNoPayload;
  uint32_t count = 0;
  alignas(8) unsigned char payload[FusedCheck::kFusedBytes] = {};
};

uint32_t payload_kind(DType dtype, ReduceOp op) {
  if (op == ReduceOp::avg) op = ReduceOp::sum;  // scaled by the caller
  return 1 + uint32_t(dtype) * 8 + uint32_t(op);
}

float add(float a, float b) {
  return a + b;
}
// int32 sums wrap, as MPI_SUM's do (in unsigned arithmetic: signed overflow is undefined).
int32_t add(int32_t a, int32_t b) {
  return int32_t(uint32_t(a) + uint32_t(b));
}

// y = op(x, y) over n elements of T, through copies: the payload is raw bytes.
template <typename T>
void combine_values(const unsigned char* x, unsigned char* y, uint32_t n, ReduceOp op) {
  T a[FusedCheck::kFusedBytes / sizeof(T)], b[FusedCheck::kFusedBytes / sizeof(T)];
  std::memcpy(a, x, n * sizeof(T));
  std::memcpy(b, y, n * sizeof(T));
  for (uint32_t i = 0; i < n; ++i) {
    b[i] = op == ReduceOp::min   ? std::min(a[i], b[i])
           : op == ReduceOp::max ? std::max(a[i], b[i])
                                 : add(a[i], b[i]);
  }
  std::memcpy(y, b, n * sizeof(T));
}

// 16-bit floats add in float32 and round at every combine, as the unfused MPI path does.
template <typename H>
void combine_halves(const unsigned char* x, unsigned char* y, uint32_t n) {
  H a[FusedCheck::kFusedBytes / sizeof(H)], b[FusedCheck::kFusedBytes / sizeof(H)];
  std::memcpy(a, x, n * sizeof(H));
  std::memcpy(b, y, n * sizeof(H));
  for (uint32_t i = 0; i < n; ++i) b[i] = narrow<H>(widen(a[i]) + widen(b[i]));
  std::memcpy(y, b, n * sizeof(H));
}

void combine_payload(const Message& in, Message& io) {
  const auto dtype = static_cast<DType>((io.kind - 1) / 8);
  const auto op = static_cast<ReduceOp>((io.kind - 1) % 8);
  switch (dtype) {
    case DType::f32:
      return combine_values<float>(in.payload, io.payload, io.count, op);
    case DType::i32:
      return combine_values<int32_t>(in.payload, io.payload, io.count, op);
    case DType::bf16:
      return combine_halves<bf16>(in.payload, io.payload, io.count);
    case DType::f16:
      return combine_halves<f16>(in.payload, io.payload, io.count);
  }
}

void combine(void* in_v, void* inout_v, int* len, MPI_Datatype*) {
  const auto* in = static_cast<const Message*>(in_v);
  auto* io = static_cast<Message*>(inout_v);
  for (int k = 0; k < *len; ++k) {
    io[k].hash_max = std::max(io[k].hash_max, in[k].hash_max);
    io[k].hash_not_min = std::max(io[k].hash_not_min, in[k].hash_not_min);
    if (in[k].kind != io[k].kind || in[k].count != io[k].count) {
      io[k].kind = kMixed;
    } else if (io[k].kind != kNoPayload && io[k].kind != kMixed) {
      combine_payload(in[k], io[k]);
    }
  }
}

std::string mpi_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return fmt::format("{} (MPI error code {})", std::string(text, size_t(len)), rc);
}

}  // namespace

FusedCheck::FusedCheck() {
  int rc = MPI_Type_contiguous(int(sizeof(Message)), MPI_BYTE, &type_);
  if (rc == MPI_SUCCESS) rc = MPI_Type_commit(&type_);
  DP_CHECK(rc == MPI_SUCCESS, "creating the desync check's MPI datatype failed: {}", mpi_text(rc));
  rc = MPI_Op_create(&combine, /*commute=*/1, &op_);
  DP_CHECK(rc == MPI_SUCCESS, "creating the desync check's MPI op failed: {}", mpi_text(rc));
}

FusedCheck::~FusedCheck() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (op_ != MPI_OP_NULL) MPI_Op_free(&op_);
  if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
}

bool FusedCheck::fits(const Tensor& t, ReduceOp op) {
  if (t.nbytes() > kFusedBytes) return false;
  // What check_allreduce accepts; 16-bit floats only sum (and avg).
  return !is_half_float(t.dtype()) || op == ReduceOp::sum || op == ReduceOp::avg;
}

void FusedCheck::run(MPI_Comm comm, const Fingerprint& fp, Tensor* t, ReduceOp op) const {
  Message in, out;
  in.hash_max = fp.hash;
  in.hash_not_min = ~fp.hash;
  if (t != nullptr) {
    in.kind = payload_kind(t->dtype(), op);
    in.count = uint32_t(t->numel());
    std::memcpy(in.payload, t->raw(), t->nbytes());
  }
  const int rc = MPI_Allreduce(&in, &out, 1, type_, op_, comm);
  DP_CHECK(rc == MPI_SUCCESS, "collective {}: MPI_Allreduce (with the desync check) failed: {}",
           fp.text(), mpi_text(rc));
  if (out.hash_max != ~out.hash_not_min) name_mismatch(comm, fp);  // throws, `t` untouched
  if (t == nullptr) return;
  DP_CHECK(out.kind == in.kind && out.count == in.count,
           "collective {}: internal: agreeing ranks sent different payloads", fp.text());
  std::memcpy(t->raw(), out.payload, t->nbytes());
}

}  // namespace dp
