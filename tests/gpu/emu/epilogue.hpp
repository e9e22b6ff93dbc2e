// epilogue.hpp - after the unit: calling a kernel from cuLaunchKernel's void **args, and launching.
template <typename... A, size_t... I>
static void emu_call(void (*f)(A...), void **a, std::index_sequence<I...>) {
    f(*(std::remove_cv_t<std::remove_reference_t<A>> *)a[I]...);
}
template <typename... A> static void emu_tramp_of(void (*f)(A...), void **a) {
    emu_call(f, a, std::index_sequence_for<A...>{});
}
extern "C" void emu_launch(void (*tramp)(void **), const unsigned g[3], const unsigned b[3], void **params) {
    blockDim = {b[0], b[1], b[2]};
    gridDim = {g[0], g[1], g[2]};
    const unsigned nt = b[0] * b[1] * b[2], nw = (nt + 31) / 32;
    for (unsigned z = 0; z < g[2]; z++)
        for (unsigned y = 0; y < g[1]; y++)
            for (unsigned x = 0; x < g[0]; x++) {
                std::barrier<> bar((ptrdiff_t)nt);
                std::vector<std::unique_ptr<std::barrier<>>> warps;
                for (unsigned w = 0; w < nw; w++)
                    warps.emplace_back(new std::barrier<>((ptrdiff_t)std::min(32u, nt - 32 * w)));
                std::vector<unsigned long long> bufs((size_t)nw * 32);
                std::vector<std::thread> th;
                for (unsigned t = 0; t < nt; t++)
                    th.emplace_back([&, t] {
                        threadIdx = {t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])};
                        blockIdx = {x, y, z};
                        emu_block_bar = &bar;
                        emu_warp_bar = warps[t / 32].get();
                        emu_warp_buf = &bufs[(t / 32) * 32];
                        emu_lane = t % 32;
                        tramp(params);
                        emu_warp_bar->arrive_and_drop();
                        bar.arrive_and_drop();
                    });
                for (auto &t : th) t.join();
            }
}
