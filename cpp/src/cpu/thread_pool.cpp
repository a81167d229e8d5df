#include "cpu/thread_pool.h"

#include <algorithm>

namespace orcd::cpu {
namespace {
// The pool whose job this thread is running, to run nested calls inline
// instead of deadlocking on the call mutex.
thread_local const ThreadPool* t_running_pool = nullptr;
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    workers_.reserve(size_t(n_threads - 1));
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(state_mutex_);
        stopping_ = true;
    }
    work_ready_.notify_all();
    for (auto& w : workers_) w.join();
}

void ThreadPool::run_chunks(Job& job) {
    const ThreadPool* outer = t_running_pool;
    t_running_pool = this;
    for (;;) {
        const int64_t begin = job.next.fetch_add(job.chunk, std::memory_order_relaxed);
        if (begin >= job.n_items) break;
        try {
            (*job.fn)(begin, std::min(begin + job.chunk, job.n_items));
        } catch (...) {
            std::lock_guard lock(job.error_mutex);
            if (!job.error) job.error = std::current_exception();
            job.next.store(job.n_items, std::memory_order_relaxed);  // skip what is left
        }
    }
    t_running_pool = outer;
}

void ThreadPool::worker_loop() {
    uint64_t seen = 0;
    for (;;) {
        Job* job;
        {
            std::unique_lock lock(state_mutex_);
            work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
            job = job_;
            if (!job) continue;  // woke after the caller finished the job alone
            ++active_workers_;
        }
        run_chunks(*job);
        {
            std::lock_guard lock(state_mutex_);
            if (--active_workers_ == 0) work_done_.notify_one();
        }
    }
}

void ThreadPool::parallel_for(int64_t n_items, const std::function<void(int64_t, int64_t)>& fn) {
    if (n_items <= 0) return;
    if (workers_.empty() || n_items == 1 || t_running_pool == this) {
        fn(0, n_items);
        return;
    }
    std::lock_guard call_lock(call_mutex_);
    Job job;
    job.fn = &fn;
    job.n_items = n_items;
    // Several chunks per thread, so a thread slowed by other load on the machine
    // leaves its share to the others.
    job.chunk = std::max<int64_t>(1, n_items / (int64_t(size()) * 4));
    {
        std::lock_guard lock(state_mutex_);
        job_ = &job;
        ++generation_;
    }
    work_ready_.notify_all();
    run_chunks(job);
    {
        // Workers that have not joined by now find nothing to do: the caller
        // waits only for those inside the job, never for a worker still asleep.
        std::unique_lock lock(state_mutex_);
        job_ = nullptr;
        work_done_.wait(lock, [&] { return active_workers_ == 0; });
    }
    if (job.error) std::rethrow_exception(job.error);
}

}  // namespace orcd::cpu
