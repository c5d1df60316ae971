// Persistent thread pool: one job at a time, dynamic task distribution, caller participates.
//
// Robust under contention (issue 15). The caller never waits for a worker that has not claimed a
// task: a job is finished when all its tasks are done, not when every worker has checked in. A
// worker that the OS has descheduled (another process holds its core) therefore costs nothing,
// because the caller and the running workers take its share of the tasks; only a task already in
// flight on a descheduled worker is waited for, and the caller waits for it asleep (after a short
// spin), which leaves its core idle so the scheduler can move the stalled worker onto it.
//
// The job word packs the job's epoch (high 32 bits) and its next unclaimed task (low 32 bits). A
// task is claimed with one compare-and-swap that also checks the epoch, so a worker that wakes
// late can never claim (or miscount) a task of a later job. Kernels split their work into more
// tasks than threads (parallelSpans: 4 per thread; the GEMMs: 2-4 per thread or per panel), so
// the caller can absorb a missing worker's share at fine granularity.
//
// Workers spin for a short, bounded time after each job (back-to-back kernels then start without
// a futex wake-up) and then block, so a finished kernel leaves no core spinning.
#include "threadpool.h"

#include <algorithm>
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
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define IJ_PAUSE() _mm_pause()
#else
#define IJ_PAUSE() ((void)0)
#endif

namespace inferjit {
namespace {

// CPUs this process may run on (its affinity mask; all CPUs where that is unknown).
int usableCpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

thread_local bool tInsideJob = false;

constexpr uint64_t kIndexMask = 0xffffffffull;
// Claimable tasks per job: the index half of the job word never carries into the epoch half.
constexpr int64_t kMaxClaims = int64_t{1} << 31;
// Sleeping workers each wake-up wakes (the caller, then every worker it woke, and so on).
constexpr int kWakeFanout = 2;

inline uint32_t epochOf(uint64_t word) { return static_cast<uint32_t>(word >> 32); }

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
    if (numTasks > kMaxClaims) {  // more tasks than the job word counts: claim them in groups
      const int64_t per = (numTasks + kMaxClaims - 1) / kMaxClaims;
      run((numTasks + per - 1) / per, [&](int64_t g, int thread) {
        for (int64_t t = g * per, end = std::min(numTasks, t + per); t < end; t++) fn(t, thread);
      });
      return;
    }
    std::lock_guard<std::mutex> api(apiMutex_);  // one job at a time (e.g. two JS workers)
    // Publish the job: everything a worker reads after a successful claim is written before the
    // release store of the new epoch (the claim's compare-and-swap acquires it).
    job_ = &fn;
    done_.store(0, std::memory_order_relaxed);
    const uint32_t epoch = ++epoch_;
    // The task count is published together with its epoch (before the state word moves on): a
    // worker still claiming for the previous job must never pair that job's epoch with this job's
    // count, or it would claim a task past the old job's end (a bad index into a destroyed job, and
    // a done count that never matches: the crash and the hang this replaced).
    jobInfo_.store((static_cast<uint64_t>(epoch) << 32) | static_cast<uint64_t>(numTasks), std::memory_order_seq_cst);
    state_.store(static_cast<uint64_t>(epoch) << 32, std::memory_order_seq_cst);
    // Wake-ups fan out: the caller wakes two sleepers and every woken worker two more while tasks
    // are left, so a small job wakes few threads and an oversubscribed pool no thundering herd.
    wake(static_cast<int>(std::min<int64_t>(kWakeFanout, numTasks - 1)));
    tInsideJob = true;
    drain(epoch, 0);
    tInsideJob = false;
    waitDone(numTasks);
  }

 private:
  // Claims the next task of job `epoch`; false once the job has no unclaimed task or is over.
  bool claim(uint32_t epoch, int64_t* task, int64_t* total) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (epochOf(s) != epoch) return false;
      // The count of job `epoch` itself; once the next job is being published this reads its
      // epoch and the claim fails (job `epoch` has then no unclaimed task left anyway).
      const uint64_t info = jobInfo_.load(std::memory_order_seq_cst);
      if (epochOf(info) != epoch) return false;
      const int64_t n = static_cast<int64_t>(info & kIndexMask);
      const int64_t idx = static_cast<int64_t>(s & kIndexMask);
      if (idx >= n) return false;
      // Success means the word still held this epoch (and `n` was read for that same epoch).
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        *task = idx;
        *total = n;
        return true;
      }
    }
  }

  void drain(uint32_t epoch, int thread) {
    int64_t task = 0, total = 0;
    while (claim(epoch, &task, &total)) {
      (*job_)(task, thread);  // job_ cannot change while a claimed task is unfinished
      // seq_cst pairs with the caller's seq_cst store of callerSleeping_ (see waitDone).
      if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == total && callerSleeping_.load(std::memory_order_seq_cst)) {
        { std::lock_guard<std::mutex> lk(doneMutex_); }
        doneCv_.notify_one();
      }
    }
  }

  // Waits until every task of the job is done: a bounded spin (the last tasks of a quiet machine
  // finish within microseconds), then asleep, so a worker stalled by another process can run here.
  void waitDone(int64_t total) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spinNow_);
    for (int i = 0; done_.load(std::memory_order_acquire) != total; i++) {
      if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) {
        std::unique_lock<std::mutex> lk(doneMutex_);
        callerSleeping_.store(true, std::memory_order_seq_cst);
        doneCv_.wait(lk, [&] { return done_.load(std::memory_order_seq_cst) == total; });
        callerSleeping_.store(false, std::memory_order_relaxed);
        break;
      }
      IJ_PAUSE();
    }
  }

  // Wakes up to `count` sleeping workers (spinning ones see the new epoch by themselves).
  void wake(int count) {
    const int sleeping = sleepers_.load(std::memory_order_seq_cst);
    if (sleeping == 0 || count <= 0) return;
    { std::lock_guard<std::mutex> lk(mutex_); }
    if (count >= sleeping) {
      cv_.notify_all();
    } else {
      for (int i = 0; i < count; i++) cv_.notify_one();
    }
  }

  // `seen` is the epoch when the thread was created: a worker that starts late still sees the
  // first job's epoch change.
  void workerLoop(int index, uint32_t seen) {
    for (;;) {
      // Short bounded spin: catches the next kernel of an op sequence cheaply.
      auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spinNow_);
      while (epochOf(state_.load(std::memory_order_acquire)) == seen && !quit_.load(std::memory_order_relaxed)) {
        if (std::chrono::steady_clock::now() >= until) break;
        for (int i = 0; i < 64; i++) IJ_PAUSE();
      }
      if (epochOf(state_.load(std::memory_order_acquire)) == seen && !quit_.load()) {
        std::unique_lock<std::mutex> lk(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        cv_.wait(lk, [&] { return epochOf(state_.load(std::memory_order_seq_cst)) != seen || quit_.load(); });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (quit_.load()) return;
      const uint64_t word = state_.load(std::memory_order_acquire);
      seen = epochOf(word);
      if (static_cast<int64_t>(word & kIndexMask) + 1 < static_cast<int64_t>(jobInfo_.load(std::memory_order_relaxed) & kIndexMask)) wake(kWakeFanout);
      tInsideJob = true;
      drain(seen, index);  // a late or superfluous worker finds nothing to claim and goes back
      tInsideJob = false;
    }
  }

  // Starts n - 1 workers. When the OS refuses a thread (EAGAIN: thread or memory limits), the
  // workers already started are stopped again and false is returned with the reason: a
  // std::system_error must not leave joinable threads behind or escape to N-API (both abort).
  bool tryStart(int n, std::string* err) {
    quit_.store(false);
    spinNow_ = n <= usableCpus() ? spinMicros_ : 0;
    const uint32_t initial = epochOf(state_.load(std::memory_order_acquire));
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
  std::mutex apiMutex_;
  std::mutex mutex_;  // sleeping workers
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
  std::mutex doneMutex_;  // the caller asleep in waitDone
  std::condition_variable doneCv_;
  std::atomic<bool> callerSleeping_{false};
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> state_{0};  // epoch << 32 | next unclaimed task
  std::atomic<uint64_t> jobInfo_{0};  // epoch << 32 | task count of that job
  std::atomic<int64_t> done_{0};
  uint32_t epoch_ = 0;  // written under apiMutex_ only
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int spinMicros_ = 50;
  // spinMicros_, or 0 while the pool has more threads than the CPUs it may run on: spinning
  // threads then only take the cores from the ones with work. Written before workers start.
  int spinNow_ = 50;
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
