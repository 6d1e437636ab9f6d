#include "runtime/comm/flight_recorder.h"

#include <utility>

#include <fmt/format.h>

#include "runtime/core/clock.h"

namespace dp {
namespace {

std::string since(double origin, double t) {
  return fmt::format("+{:.1f} ms", (t - origin) / 1e3);
}

std::string seconds(double us) {
  return fmt::format("{:.1f} s", us / 1e6);
}

// How long a collective that has not completed has been in its state, as of `now`.
std::string pending_for(const FlightRecorder::Entry& e, double now) {
  switch (e.status.state) {
    case WorkState::queued:
      return "queued for " + seconds(now - e.enqueue_us);
    case WorkState::running:
      return "running for " + seconds(now - e.status.start_us);
    case WorkState::failed:
      return "failed after " + seconds(e.status.end_us - e.status.start_us);
    case WorkState::completed:
      break;
  }
  return "completed";
}

}  // namespace

FlightRecorder::FlightRecorder() : origin_us_(now_us()) {}

void FlightRecorder::record(WorkPtr work) {
  std::lock_guard<std::mutex> lock(mu_);
  ring_[count_ % kCapacity] = std::move(work);  // releases the oldest Work, if any
  ++count_;
}

uint64_t FlightRecorder::recorded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

std::vector<FlightRecorder::Entry> FlightRecorder::snapshot() const {
  std::vector<WorkPtr> works;
  {
    // Copy the handles only: the Works' own locks are taken outside the ring's.
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t first = count_ > kCapacity ? count_ - kCapacity : 0;
    for (uint64_t i = first; i < count_; ++i) works.push_back(ring_[i % kCapacity]);
  }
  std::vector<Entry> out;
  out.reserve(works.size());
  for (const WorkPtr& w : works) {
    out.push_back({w->seq(), w->description(), w->enqueue_us(), w->status()});
  }
  return out;
}

std::string FlightRecorder::summary(int rank, double now) const {
  const std::vector<Entry> entries = snapshot();
  if (entries.empty()) return fmt::format("rank {}: no collective recorded", rank);
  // The last completed entry, and the first after it that did not complete: where the
  // rank is stuck (entries complete in order on one communication thread).
  size_t last = entries.size();
  for (size_t i = entries.size(); i-- > 0;) {
    if (entries[i].status.state == WorkState::completed) {
      last = i;
      break;
    }
  }
  std::string s =
      last == entries.size()
          ? fmt::format("rank {}: no collective completed in the last {}", rank, entries.size())
          : fmt::format("rank {}: last completed #{} {} at {}", rank, entries[last].seq,
                        entries[last].description, since(origin_us_, entries[last].status.end_us));
  const size_t next = last == entries.size() ? 0 : last + 1;
  if (next < entries.size()) {
    s += fmt::format("; #{} {}", entries[next].seq, pending_for(entries[next], now));
  }
  // The peer first: seeing it, the reader sees the text stored before it.
  const int peer = waiting_peer_.load();
  const char* what = waiting_what_.load();
  const int others = waiting_others_.load();
  const bool gave_up = gave_up_.load();
  if (peer >= 0 && others < 0) {
    s += fmt::format(", its communication thread waits for rank {}'s message ({})", peer, what);
  } else if (peer >= 0) {
    s += fmt::format(
        ", its communication thread {} in shared memory for rank {}{} to arrive "
        "at {}",
        gave_up ? "gave up waiting" : "waits", peer,
        others == 0 ? "" : fmt::format(" and {} other rank{}", others, others == 1 ? "" : "s"),
        what);
  }
  return s;
}

void FlightRecorder::set_waiting_for(int peer, const char* what) {
  set_waiting(peer, -1, what);
}

void FlightRecorder::set_waiting_at(int peer, int others, const char* where) {
  set_waiting(peer, others, where);
}

void FlightRecorder::set_waiting(int peer, int others, const char* what) {
  // The text first: a reader that sees the peer sees its text (or the next one's).
  waiting_what_.store(what);
  waiting_others_.store(others);
  gave_up_.store(false);
  waiting_peer_.store(peer);
}

void FlightRecorder::set_gave_up() {
  gave_up_.store(true);
}

std::vector<std::string> FlightRecorder::dump_lines(int rank, double now) const {
  const std::vector<Entry> entries = snapshot();
  const std::string prefix = fmt::format("dprun: flight recorder [rank {}]: ", rank);
  std::vector<std::string> lines;
  lines.push_back(prefix + fmt::format("last {} of {} collectives, oldest first (times since the "
                                       "process group started)",
                                       entries.size(), recorded()));
  for (const Entry& e : entries) {
    std::string line =
        fmt::format("{}#{} {} {}: enqueued {}", prefix, e.seq, work_state_name(e.status.state),
                    e.description, since(origin_us_, e.enqueue_us));
    if (e.status.state != WorkState::queued) {
      line += ", started " + since(origin_us_, e.status.start_us);
    }
    if (e.status.state == WorkState::completed || e.status.state == WorkState::failed) {
      line += ", ended " + since(origin_us_, e.status.end_us);
    } else {
      line += ", " + pending_for(e, now);
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

void FlightRecorder::dump(int rank, std::FILE* out) const {
  for (const std::string& line : dump_lines(rank, now_us())) {
    std::fprintf(out, "%s\n", line.c_str());
  }
  std::fflush(out);
}

std::string FlightRecorder::dump_once(int rank, std::FILE* out) const {
  if (!dumped_.exchange(true)) dump(rank, out);
  return summary(rank, now_us());
}

}  // namespace dp
