"""Argument checks shared by the linear layers and the Keras adapters."""


def reject_unsupported(name, kwargs):
    """Raise ValueError for constructor arguments that bound propagation cannot handle."""
    activation = kwargs.get("activation")
    if activation not in (None, "linear"):
        raise ValueError(activation_message(name, activation))
    if kwargs.get("data_format") not in (None, "channels_last"):
        raise ValueError(f"{name} supports data_format='channels_last' only. Received: "
                         f"data_format={kwargs.get('data_format')!r}")
    if kwargs.get("dilation_rate") not in (None, 1, (1, 1), [1, 1]):
        raise ValueError(f"{name} supports dilation_rate=1 only.")
    if kwargs.get("groups") not in (None, 1):
        raise ValueError(f"{name} supports groups=1 only.")


def activation_message(name, activation):
    """Why an activation inside a linear layer is refused, and how to write the model."""
    shown = getattr(activation, "__name__", activation)
    if shown in ("softmax", "sigmoid", "log_softmax"):
        how = ("the logit layer must output raw logits: drop the activation (the robust "
               "loss applies the softmax, and the certificate compares logits)")
    else:
        how = (f"write {name}(..., activation=None) followed by the activation as its own "
               "layer: keras.layers.ReLU() or gloro_local.layers.ReLU, ReLUTheta, MaxMin, "
               "ClippedMaxMin")
    return (f"An activation inside {name} is not supported, because the bounds treat "
            f"each linear layer and each activation separately; {how}. Received: "
            f"activation={shown!r}")


def require_channels_last(layer):
    """ValueError unless the built-or-configured layer uses channels_last (a layer created
    under keras.config.set_image_data_format('channels_first') would reorder its input,
    and the bounds would describe a different function)."""
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        raise ValueError(f"{type(layer).__name__} {layer.name!r} uses data_format="
                         f"{data_format!r}; gloro_local supports 'channels_last' only "
                         "(keras.config.set_image_data_format('channels_last')).")
