// The one process-wide thread pool every native kernel runs on. Workers stay alive between
// calls, the calling thread takes part in every job, and idle workers sleep on a condition
// variable (after a short bounded spin) so nothing burns a core once a kernel has returned.
#pragma once
#include <cstdint>
#include <functional>

namespace inferjit {

// fn(task, thread) is called once for every task in [0, numTasks); `thread` is in [0, numThreads())
// and identifies per-thread scratch. Tasks are handed out dynamically (an atomic counter) and the
// call returns once every task is done: it never waits for a worker that claimed none, so a worker
// descheduled by another process only slows the job by the task it holds. Split work into more
// tasks than threads (about 4 per thread) so the others can take a missing worker's share.
// Calls from inside a running job (nested parallelism) run serially on the calling thread.
void parallelFor(int64_t numTasks, const std::function<void(int64_t task, int thread)>& fn);

// The most threads the pool accepts (setNumThreads, INFERJIT_NUM_THREADS); the TypeScript side
// (src/backends/cpu/index.ts MAX_THREADS) checks the same bound.
constexpr int kMaxThreads = 1024;

int numThreads();
// Changes the pool size (1..kMaxThreads); waits for idle, then starts or stops workers. Throws
// std::invalid_argument for a size out of range and std::runtime_error when the OS refuses to
// create the threads (the pool then keeps its previous size, or 1 thread if even that fails):
// a failed thread creation never escapes as std::system_error and aborts the process.
void setNumThreads(int n);
// INFERJIT_NUM_THREADS as the pool reads it: a whole number in 1..kMaxThreads, else 0 (ignored).
int parseThreadCount(const char* s);
// Physical cores as the OS reports them (siblings of one core counted once).
int physicalCores();

}  // namespace inferjit
