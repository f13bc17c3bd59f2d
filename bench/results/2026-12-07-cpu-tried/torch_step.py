# The llama preset's training step (forward + backward, B = 16, T = 256) in torch.compile form, as
# bench/peers does it, best of N steps after warm-up, wall and CPU. Run from the repository root
# with the peers' virtual environment:  .venv-peers/bin/python <this> [N]
import os, sys, time, torch
sys.path.insert(0, "bench/peers")  # run from the repository root
import torch_models
torch.set_num_threads(2)
config = torch_models.load_config("models/presets/llama.json")
torch.manual_seed(0)
model = torch_models.Model(config)
B, T = 16, 256
x = torch.randint(0, config["vocab_size"] if isinstance(config, dict) else 256, (B, T))
y = torch.randint(0, 256, (B, T))
fn = torch.compile(model, dynamic=False)
def step():
    model.zero_grad(set_to_none=True)
    fn(x, y).backward()
for _ in range(3): step()
best_w = best_c = 1e9
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 15):
    w0, c0 = time.perf_counter(), time.process_time()
    step()
    best_w = min(best_w, time.perf_counter() - w0); best_c = min(best_c, time.process_time() - c0)
print(f"torch.compile llama T=256 step: {best_w*1e3:.1f} ms wall, {best_c*1e3:.1f} ms CPU (best), policy {os.environ.get('OMP_WAIT_POLICY','unset')}")
