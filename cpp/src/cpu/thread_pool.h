// A fixed set of worker threads that split index ranges with the caller.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace orcd::cpu {

class ThreadPool {
public:
    // n_threads counts the calling thread; 0 means one per hardware thread.
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }

    // Calls fn(begin, end) on disjoint ranges covering [0, n_items) once each,
    // on the workers and the calling thread, and returns when all are done.
    // The first exception fn throws is rethrown here. Calls from several
    // threads run one after another; a call from inside fn runs inline.
    void parallel_for(int64_t n_items, const std::function<void(int64_t begin, int64_t end)>& fn);

private:
    struct Job {
        const std::function<void(int64_t, int64_t)>* fn = nullptr;
        int64_t n_items = 0;
        int64_t chunk = 1;
        std::atomic<int64_t> next{0};
        std::exception_ptr error;
        std::mutex error_mutex;
    };

    void worker_loop();
    void run_chunks(Job& job);

    std::vector<std::thread> workers_;
    std::mutex call_mutex_;   // one parallel_for at a time
    std::mutex state_mutex_;  // guards the fields below
    std::condition_variable work_ready_;
    std::condition_variable work_done_;
    Job* job_ = nullptr;        // the running job; cleared once the caller has no more to claim
    uint64_t generation_ = 0;   // bumped per job, to wake the workers
    int active_workers_ = 0;    // workers inside the current job
    bool stopping_ = false;
};

}  // namespace orcd::cpu
