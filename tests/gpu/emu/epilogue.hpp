// epilogue.hpp - after the unit: calling a kernel from cuLaunchKernel's void **args, and launching.
template <typename... A, size_t... I>
static void emu_call(void (*f)(A...), void **a, std::index_sequence<I...>) {
    f(*(std::remove_cv_t<std::remove_reference_t<A>> *)a[I]...);
}
template <typename... A> static void emu_tramp_of(void (*f)(A...), void **a) {
    emu_call(f, a, std::index_sequence_for<A...>{});
}
/* Green threads: emu_switch saves the callee-saved registers and the stack pointer of the
 * running context in *from and continues the one whose stack pointer is `to`. */
extern "C" void emu_switch(void **from, void *to);
asm(".text\n.globl emu_switch\n.type emu_switch,@function\nemu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n"
    ".size emu_switch,.-emu_switch\n");

#define EMU_STACK (256u << 10)
struct emu_thread { void *sp; emu_dim3 idx; unsigned lane, warp; bool done; };
static void *emu_sched_sp;
static emu_thread *emu_cur;
static void (*emu_tramp)(void **);
static void **emu_params;
static std::vector<emu_barrier> emu_warps;

static void emu_yield() { emu_switch(&emu_cur->sp, emu_sched_sp); }

static void emu_entry() { /* the bottom of every green thread's stack */
    emu_tramp(emu_params);
    emu_drop(emu_warp_bar);
    emu_drop(emu_block_bar);
    emu_cur->done = true;
    emu_switch(&emu_cur->sp, emu_sched_sp); /* never resumed */
    __builtin_trap();
}

/* The stack of a new context: six zero registers, emu_entry as the return address, and a zero
 * return address for emu_entry itself, 16-aligned as the ABI wants at a call. */
static void *emu_fresh_stack(char *base) {
    uintptr_t top = ((uintptr_t)base + EMU_STACK) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;
    *--sp = (void *)&emu_entry;
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    return sp;
}

extern "C" void emu_launch(void (*tramp)(void **), const unsigned g[3], const unsigned b[3], void **params) {
    blockDim = {b[0], b[1], b[2]};
    gridDim = {g[0], g[1], g[2]};
    const unsigned nt = b[0] * b[1] * b[2], nw = (nt + 31) / 32, nb = g[0] * g[1] * g[2];
    static char *stacks[1024]; /* kept for the process (a plain array: leak checkers see them) */
    static unsigned n_stacks;
    while (n_stacks < nt && n_stacks < 1024) stacks[n_stacks++] = new char[EMU_STACK];
    if (nt > 1024) __builtin_trap(); /* CUDA's limit too */
    std::vector<emu_thread> th(nt);
    std::vector<unsigned long long> bufs((size_t)nw * 32);
    emu_tramp = tramp, emu_params = params;
    for (unsigned k = 0; k < nb; k++) {
        emu_barrier block = {nt, 0, 0};
        emu_warps.assign(nw, emu_barrier{0, 0, 0});
        for (unsigned t = 0; t < nt; t++) {
            th[t] = {emu_fresh_stack(stacks[t]), {t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])}, t % 32, t / 32, false};
            emu_warps[t / 32].expected++;
        }
        blockIdx = {k % g[0], (k / g[0]) % g[1], k / (g[0] * g[1])};
        emu_block_bar = &block;
        for (unsigned left = nt; left > 0;)
            for (unsigned t = 0; t < nt; t++) {
                emu_thread *c = &th[t];
                if (c->done) continue;
                emu_cur = c;
                threadIdx = c->idx, emu_lane = c->lane;
                emu_warp_bar = &emu_warps[c->warp];
                emu_warp_buf = &bufs[(size_t)c->warp * 32];
                emu_switch(&emu_sched_sp, c->sp);
                if (c->done) left--;
            }
    }
}
