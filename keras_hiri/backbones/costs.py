"""An independent multiply-add count on the PyTorch backend: PyTorch's own
``FlopCounterMode`` over one real forward pass (the aten operations that ran),
beside the project's :func:`keras_hiri.profile`, which counts from the layers."""


def torch_macs(model, input_shape):
    """Multiply-adds of ``model`` on one zero batch of ``input_shape``, counted
    by ``torch.utils.flop_counter.FlopCounterMode`` (needs the PyTorch backend,
    or a ``torch.nn.Module``). CPU flash attention, which the counter does not
    cover, is counted with its own ``sdpa_flop_count``."""
    import numpy as np
    import torch
    from torch.utils import flop_counter

    def cpu_attention(query_shape, key_shape, value_shape, *args, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention}
    if isinstance(model, torch.nn.Module) and not hasattr(model, "predict"):
        x = torch.zeros(input_shape)
        run = model
    else:
        x = np.zeros(input_shape, "float32")

        def run(images):
            return model(images, training=False)
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run(x)
    return counter.get_total_flops() // 2
