// Persistent thread pool: one job at a time, dynamic task distribution, caller participates.
// Workers spin for a short, bounded time after each job (back-to-back eager kernels then start
// without a futex wake-up) and then block, so a finished kernel leaves no core spinning.
#include "threadpool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define IJ_PAUSE() _mm_pause()
#else
#define IJ_PAUSE() ((void)0)
#endif

namespace inferjit {
namespace {

thread_local bool tInsideJob = false;

class Pool {
 public:
  Pool() {
    int n = physicalCores();
    // Only a whole number in 1..kMaxThreads is used; anything else (the TypeScript side warns
    // about it) keeps the default, as does a count the OS cannot create threads for.
    if (const char* env = std::getenv("INFERJIT_NUM_THREADS")) {
      int v = parseThreadCount(env);
      if (v > 0) n = v;
    }
    if (const char* env = std::getenv("INFERJIT_SPIN_US")) spinMicros_ = std::max(0, std::atoi(env));
    std::string err;
    if (!tryStart(n, &err) && !tryStart(std::min(n, physicalCores()), &err)) tryStart(1, &err);
  }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    if (n < 1 || n > kMaxThreads) {
      throw std::invalid_argument("thread count " + std::to_string(n) + " is outside 1.." + std::to_string(kMaxThreads));
    }
    std::lock_guard<std::mutex> api(apiMutex_);
    const int old = size();
    if (n == old) return;
    stop();
    std::string err;
    if (tryStart(n, &err)) return;
    // Put the previous pool back (it ran before, so its threads normally start again).
    std::string ignored;
    const int kept = tryStart(old, &ignored) ? old : (tryStart(1, &ignored), 1);
    throw std::runtime_error("could not start " + std::to_string(n) + " threads (" + err + "); the pool keeps " +
                             std::to_string(kept) + " thread" + (kept == 1 ? "" : "s"));
  }

  void run(int64_t numTasks, const std::function<void(int64_t, int)>& fn) {
    if (numTasks <= 0) return;
    if (tInsideJob || numTasks == 1 || workers_.empty()) {
      bool prev = tInsideJob;
      tInsideJob = true;
      for (int64_t t = 0; t < numTasks; t++) fn(t, 0);
      tInsideJob = prev;
      return;
    }
    std::lock_guard<std::mutex> api(apiMutex_);  // one job at a time (e.g. two JS workers)
    job_ = &fn;
    numTasks_ = numTasks;
    next_.store(0, std::memory_order_relaxed);
    int helpers = static_cast<int>(std::min<int64_t>(workers_.size(), numTasks - 1));
    // Every worker acknowledges every job (idle ones without working), so no worker can carry a
    // stale generation into the next job and acknowledge twice.
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    activeHelpers_ = helpers;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    tInsideJob = true;
    work(0);
    tInsideJob = false;
    // Wait for helpers still finishing their last task; this is inside the kernel call.
    // Spin briefly, then yield: when another process holds a core, a descheduled worker only
    // acknowledges in its next time slice, and spinning would steal that slice from it.
    for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; spins++) {
      if (spins < 4096) IJ_PAUSE(); else std::this_thread::yield();
    }
    job_ = nullptr;
  }

 private:
  void work(int thread) {
    const auto& fn = *job_;
    for (;;) {
      int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= numTasks_) break;
      fn(t, thread);
    }
  }

  // `seen` is read by start() before the thread exists: a worker that starts late must still see
  // the first job's generation bump, or the caller waits forever for it.
  void workerLoop(int index, uint64_t seen) {
    for (;;) {
      // Short bounded spin: catches the next kernel of an eager op sequence cheaply.
      auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spinMicros_);
      while (generation_.load(std::memory_order_acquire) == seen && !quit_.load(std::memory_order_relaxed)) {
        if (std::chrono::steady_clock::now() >= until) break;
        for (int i = 0; i < 64; i++) IJ_PAUSE();
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen || quit_.load(); });
      }
      if (quit_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      if (index <= activeHelpers_) {  // a job too small for every worker leaves some idle
        tInsideJob = true;
        work(index);
        tInsideJob = false;
      }
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  // Starts n - 1 workers. When the OS refuses a thread (EAGAIN: thread or memory limits), the
  // workers already started are stopped again and false is returned with the reason: a
  // std::system_error must not leave joinable threads behind or escape to N-API (both abort).
  bool tryStart(int n, std::string* err) {
    quit_.store(false);
    const uint64_t initial = generation_.load(std::memory_order_acquire);
    try {
      workers_.reserve(static_cast<size_t>(std::max(0, n - 1)));
      for (int i = 1; i < n; i++) workers_.emplace_back([this, i, initial] { workerLoop(i, initial); });
      return true;
    } catch (const std::exception& e) {
      *err = e.what();
      stop();
      return false;
    }
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      quit_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex apiMutex_, mutex_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> quit_{false};
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  int activeHelpers_ = 0;
  int64_t numTasks_ = 0;
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int spinMicros_ = 50;
};

}  // namespace

// "8" -> 8; anything but a whole number in 1..kMaxThreads (surrounding blanks allowed) -> 0.
int parseThreadCount(const char* s) {
  while (*s == ' ' || *s == '\t') s++;
  long v = 0;
  int digits = 0;
  for (; *s >= '0' && *s <= '9'; s++, digits++) {
    v = v * 10 + (*s - '0');
    if (v > kMaxThreads) return 0;
  }
  while (*s == ' ' || *s == '\t') s++;
  if (digits == 0 || *s != '\0' || v < 1) return 0;
  return static_cast<int>(v);
}

namespace {

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers must not be joined during static teardown
  return *p;
}

}  // namespace

int physicalCores() {
  // Count distinct (package, core) pairs so hyper-threads share one slot.
  std::set<std::pair<int, int>> cores;
  unsigned n = std::thread::hardware_concurrency();
  for (unsigned cpu = 0; cpu < n; cpu++) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream pk(base + "physical_package_id"), co(base + "core_id");
    int p = -1, c = -1;
    if (!(pk >> p) || !(co >> c)) return n > 0 ? static_cast<int>(n) : 1;
    cores.insert({p, c});
  }
  return cores.empty() ? 1 : static_cast<int>(cores.size());
}

void parallelFor(int64_t numTasks, const std::function<void(int64_t, int)>& fn) { pool().run(numTasks, fn); }
int numThreads() { return pool().size(); }
void setNumThreads(int n) { pool().resize(n); }

}  // namespace inferjit
