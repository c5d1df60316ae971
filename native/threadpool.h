// The one process-wide thread pool every native kernel runs on. Workers stay alive between
// calls, the calling thread takes part in every job, and idle workers sleep on a condition
// variable (after a short bounded spin) so nothing burns a core once a kernel has returned.
#pragma once
#include <cstdint>
#include <functional>

namespace inferjit {

// fn(task, thread) is called once for every task in [0, numTasks); `thread` is in [0, numThreads())
// and identifies per-thread scratch. Tasks are handed out dynamically (an atomic counter).
// Calls from inside a running job (nested parallelism) run serially on the calling thread.
void parallelFor(int64_t numTasks, const std::function<void(int64_t task, int thread)>& fn);

int numThreads();
// Changes the pool size (>= 1); waits for idle, then starts or stops workers.
void setNumThreads(int n);
// Physical cores as the OS reports them (siblings of one core counted once).
int physicalCores();

}  // namespace inferjit
