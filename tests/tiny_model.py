"""Build a tiny random causal LM and tokenizer in a folder (no download, under a second)."""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_model(folder: Path, head_dim: int = 16, seed: int = 0) -> Path:
    """Save a 2-layer random Llama with a small byte-level BPE tokenizer into ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # a fixed corpus (the lab's templates as they were when these tests were written), so
    # that adding a template does not change the tiny tokenizer, and with it every toy result
    corpus = json.loads((Path(__file__).parent / "golden" / "tiny_tokenizer_corpus.json")
                        .read_text()) + ["0123456789 " * 20]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    heads = 2
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=heads * head_dim, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=1,
        head_dim=head_dim, max_position_embeddings=4096,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer random BERT with the same small tokenizer into ``folder``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    build_tiny_model(folder / "_tok", seed=seed)
    tok = AutoTokenizer.from_pretrained(folder / "_tok")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
