"""Hypothesis strategies shared by the property tests: single conv layers (``conv_layers``)
and whole graphs (``graphs``, specs for ``tests/graphgen.py``)."""

from hypothesis import strategies as st

from tests.graphgen import GraphSpec, Node, node_shape


@st.composite
def conv_layers(draw, max_hw: int = 16, max_ch: int = 6):
    """Keyword arguments for ``tests.modelgen.conv_layer_model``: kernels 1–7, strides 1–2,
    asymmetric padding, dilation 1–2, dense/depthwise/grouped, maps from one pixel up to
    ``max_hw``, bits 2–8, int and pow2 weights."""
    k = draw(st.integers(1, 7))
    dilation = draw(st.integers(1, 2))
    span = dilation * (k - 1) + 1
    pads = draw(st.tuples(*[st.integers(0, k - 1)] * 4))
    # The padded map must hold one window.
    h = draw(st.integers(max(1, span - pads[0] - pads[2]), max(max_hw, span)))
    w = draw(st.integers(max(1, span - pads[1] - pads[3]), max(max_hw, span)))
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    if kind == "dense":
        cin, cout, groups = draw(st.integers(1, max_ch)), draw(st.integers(1, max_ch)), 1
    elif kind == "depthwise":
        cin = draw(st.integers(1, max_ch))
        groups, cout = cin, cin * draw(st.integers(1, 2))
    else:
        groups = draw(st.integers(2, 4))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    return dict(cin=cin, cout=cout, hw=(h, w), k=k, stride=draw(st.integers(1, 2)), pad=pads, dilation=dilation,
                groups=groups, wbits=draw(st.integers(2, 8)), abits=draw(st.integers(2, 8)),
                in_bits=draw(st.integers(2, 8)), act=draw(st.sampled_from(["none", "relu", "leaky"])),
                per_channel=draw(st.booleans()), pow2=draw(st.booleans()), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


#: Channel counts: small ones, odd ones above a block, and (often) multiples of tn/tm: whole
#: blocks on both targets, so concats run on the accelerator, their slices stored in place.
CHANNELS = st.one_of(st.integers(1, 12), st.integers(13, 36), st.sampled_from([16, 32, 4, 8]),
                     st.sampled_from([16, 32]))
#: Graph input sizes: a pixel or a few, small maps, and wide maps that tiny cuts into strips.
SIZES = {"point": (st.integers(1, 3), st.integers(1, 3)), "small": (st.integers(4, 14), st.integers(4, 14)),
         "wide": (st.integers(2, 6), st.integers(40, 70))}
#: Node kinds with their draw weights (conv first: examples shrink towards it).
KINDS = (["conv"] * 6 + ["maxpool"] * 3 + ["add"] * 2 + ["concat"] * 3 + ["stage", "avgpool", "resize", "act"]
         + ["host"] * 3)
MAX_MAP = 80  # keep every map at most this wide or high, so an example runs in well under a second


def _pick(draw, n: int) -> int:
    """A tensor index, shrinking towards the newest (a chain); older ones make branches."""
    return n - 1 - draw(st.integers(0, n - 1))


def _quant(draw, optional: bool = False):
    """(bits, jitter) of the quantizer after a node, or (half the time, when ``optional``)
    None: no quantizer, the op carries its input's scale (as Brevitas exports MaxPool)."""
    if optional and draw(st.booleans()):
        return None
    return draw(st.sampled_from([8, 8, 8, 4, 6, 7, 3])), draw(st.sampled_from([0, 0, -1, 1]))


def _act(draw, host_ok: bool = True) -> dict:
    act = draw(st.sampled_from(["none", "relu", "relu", "leaky", "clip"] + (["leaky01"] if host_ok else [])))
    if act == "leaky":
        return {"act": act, "leaky_exp": draw(st.integers(1, 4))}
    if act == "clip":
        return {"act": act, "hi": draw(st.sampled_from([0.25, 0.5, 1.0])), "lo": draw(st.sampled_from(["zero", "sym"]))}
    return {"act": act}


def _conv(draw, shapes, src: int, cout: int | None = None, same: bool = False):
    """A conv node (``same``: stride 1, output map = input map, for residuals and concats)."""
    c, h, w = shapes[src]
    k = draw(st.sampled_from([1, 3, 1, 5, 2])) if not same else draw(st.sampled_from([1, 3]))
    stride = 1 if same else draw(st.sampled_from([1, 1, 2, 3]))
    dilation = 1 if same or k == 1 else draw(st.sampled_from([1, 1, 1, 2]))
    span = dilation * (k - 1) + 1
    how = "same" if same else draw(st.sampled_from(["same", "same", "valid", "asym"]))
    if how == "same" and span % 2:
        pads = (span // 2,) * 4
    elif how == "asym":
        pads = tuple(draw(st.lists(st.integers(0, k - 1), min_size=4, max_size=4)))
    else:
        pads = (0,) * 4
    if h + pads[0] + pads[2] < span or w + pads[1] + pads[3] < span:
        k, dilation, pads = 1, 1, (0,) * 4
    groups = draw(st.sampled_from(["dense", "dense", "depthwise", "grouped"]))
    divisors = [g for g in range(2, min(c, 8) + 1) if c % g == 0]
    if groups == "depthwise" and c > 1 and cout is None:
        groups, cout = c, c * draw(st.sampled_from([1, 1, 2]))
    elif groups == "depthwise" and c > 1 and cout == c:
        groups = c
    elif groups == "grouped" and divisors:
        g = draw(st.sampled_from(divisors))
        if cout is None:
            cout = g * draw(st.integers(1, 3))
        groups = g if cout % g == 0 else 1
    else:
        groups = 1
    cout = draw(CHANNELS) if cout is None else cout
    attrs = dict(cout=cout, k=k, stride=stride, pads=pads, dilation=dilation, groups=groups,
                 wbits=draw(st.sampled_from([8, 8, 4, 2, 3, 5, 6, 7])), pow2=draw(st.booleans()),
                 per_channel=draw(st.booleans()), bias=draw(st.sampled_from([True, True, False])), **_act(draw))
    q = _quant(draw)
    return Node("conv", (src,), attrs, q)


def _window(draw, h: int, w: int, kernel: tuple[int, int], stride: int, padded: bool):
    pads = (0,) * 4
    if padded:
        pads = tuple(draw(st.integers(0, kernel[i % 2] - 1)) for i in range(4))
    if h + pads[0] + pads[2] < kernel[0] or w + pads[1] + pads[3] < kernel[1]:
        return None
    return dict(kernel=kernel, stride=stride, pads=pads)


def _node(draw, shapes, nodes) -> list:
    """One to three nodes over the tensors whose shapes are ``shapes`` (made by ``nodes``)."""
    n = len(shapes)
    kind = draw(st.sampled_from(KINDS))
    src = _pick(draw, n)
    c, h, w = shapes[src]
    if kind == "conv":
        return [_conv(draw, shapes, src)]
    if kind == "stage":  # conv then a max-pool of window = stride (fuses into the conv)
        conv = _conv(draw, shapes, src)
        k = draw(st.integers(2, 3))
        pool = Node("maxpool", (n,), dict(kernel=(k, k), stride=k, pads=(0,) * 4, ceil=0), None)
        return [conv, pool] if min(node_shape(conv, shapes)[1:]) >= k else [conv]
    if kind == "act":
        attrs = _act(draw, host_ok=False)
        return [Node("act", (src,), attrs, _quant(draw, optional=attrs["act"] != "leaky"))]
    if kind == "maxpool":
        if draw(st.integers(0, 7)) == 0:
            return [Node("maxpool", (src,), {"global": True}, _quant(draw, optional=True))]
        fusable = draw(st.booleans())  # window = stride, no padding: fuses into its conv
        k = draw(st.integers(2, 3) if fusable else st.integers(1, 4))
        convs = [t for t in range(1, n) if nodes[t - 1].kind == "conv" and all(t not in x.inputs for x in nodes)]
        if fusable and convs:  # the conv's only reader, as in a CNN's conv-pool pairs
            src = draw(st.sampled_from(convs))
            c, h, w = shapes[src]
        win = _window(draw, h, w, (k, k), k if fusable else draw(st.integers(1, 3)), not fusable and draw(st.booleans()))
        if win is None:
            return []
        ceil = draw(st.sampled_from([0, 0, 1]))
        q = None if fusable and draw(st.booleans()) else _quant(draw, optional=True)
        return [Node("maxpool", (src,), dict(win, ceil=int(ceil)), q)]
    if kind == "avgpool":
        if draw(st.integers(0, 5)) == 0:
            return [Node("avgpool", (src,), {"global": True}, _quant(draw))]
        kernel = draw(st.sampled_from([(2, 2), (2, 2), (1, 2), (2, 1), (4, 4), (2, 4), (1, 4)]))
        win = _window(draw, h, w, kernel, draw(st.integers(1, 3)), draw(st.booleans()))
        return [] if win is None else [Node("avgpool", (src,), win, _quant(draw))]
    if kind == "resize":
        factors = draw(st.sampled_from([(2, 2), (2, 2), (3, 3), (1, 2), (2, 1), (3, 2)]))
        if h * factors[0] > MAX_MAP or w * factors[1] > MAX_MAP:
            return []
        attrs = dict(factors=factors, coords=draw(st.sampled_from(["asymmetric", "half_pixel"])),
                     sizes=draw(st.booleans()))
        return [Node("resize", (src,), attrs, _quant(draw, optional=True))]
    if kind == "add":
        same = [t for t in range(n) if shapes[t] == shapes[src]]
        other = draw(st.sampled_from(same + [None] * 2))
        out = []
        if other is None:  # a residual branch
            out.append(_conv(draw, shapes, src, cout=c, same=True))
            other = n
        ins = (src, other) if draw(st.booleans()) else (other, src)
        return out + [Node("add", ins, {}, _quant(draw))]
    if kind == "concat":
        out, ins = [], [src]
        for _ in range(draw(st.integers(1, 2))):
            same = [t for t in range(n) if shapes[t][1:] == (h, w)]
            other = draw(st.sampled_from(same + [None] * 2))
            if other is None:  # a new branch of the same map size, often of whole tn/tm blocks
                cout = draw(st.sampled_from([None, 32, 16, 32, 8]))  # zu3eg stores a conv in place at 32
                out.append(_conv(draw, shapes, draw(st.sampled_from(same)), cout=cout, same=True))
                other = n + len(out) - 1
            ins.append(other)
        order = draw(st.permutations(ins))
        if draw(st.booleans()):  # whole 16-channel slices first: on the accelerator of both targets
            chans = {t: shapes[t][0] if t < n else out[t - n].attrs["cout"] for t in ins}
            order = sorted(order, key=lambda t: chans[t] % 16 != 0)
        same = draw(st.sampled_from([True, True, False]))
        return out + [Node("concat", tuple(order), {"same": same}, _quant(draw))]
    host = draw(st.sampled_from(["sigmoid", "silu", "softmax", "leaky_host", "layout", "bcast_add"]))
    if host == "layout":
        return [Node("layout", (src,), {"how": draw(st.sampled_from(["transpose", "reshape"]))}, None)]
    return [Node(host, (src,), {}, _quant(draw))]


@st.composite
def graphs(draw, max_nodes: int = 8):
    """A ``tests.graphgen.GraphSpec``: a DAG of up to ``max_nodes`` drawn ops (plus the branch
    convs residual adds and concats create) over one input — chains, branches from any
    earlier tensor (the input included), residual adds, concats of 2–3 maps of any channel
    counts with different or equal scales, pools, nearest resizes, activations, heads (a conv
    whose output has no quantizer: a wide accumulator), and host ops
    (float ops, a non-po2 LeakyReLU, layout pairs, a broadcasting add) that split the
    accelerator's work into segments; every unconsumed tensor is an output, sometimes an
    inner one too. About one in five is a float model for ``quantize_model``."""
    size = draw(st.sampled_from(["small", "wide", "small", "point", "wide"]))
    hs, ws = SIZES[size]
    shapes = [(draw(st.integers(1, 4)), draw(hs), draw(ws))]
    nodes = []
    for _ in range(draw(st.integers(2, max_nodes))):
        for node in _node(draw, shapes, nodes):
            shape = node_shape(node, shapes)
            if min(shape) < 1 or max(shape[1:]) > MAX_MAP:
                break
            nodes.append(node)
            shapes.append(shape)
    if not nodes:
        nodes.append(_conv(draw, shapes, 0))
        shapes.append(node_shape(nodes[0], shapes))
    used = {t for node in nodes for t in node.inputs}
    if draw(st.integers(0, 3)) == 0:  # a detector head: a conv with no output quantizer
        src = draw(st.sampled_from([t for t in range(len(shapes)) if t not in used]))
        head = _conv(draw, shapes, src)._replace(q=None)
        shape = node_shape(head, shapes)
        if min(shape) >= 1 and max(shape[1:]) <= MAX_MAP:
            nodes.append(head)
            shapes.append(shape)
            used.add(src)
    outputs = [t for t in range(1, len(shapes)) if t not in used]
    inner = sorted(used - {0})
    if inner and draw(st.integers(0, 3)) == 0:
        outputs.append(draw(st.sampled_from(inner)))
    quantizer = None
    if draw(st.integers(0, 4)) == 4:
        quantizer = dict(wbits=draw(st.sampled_from([8, 4, 6, 3])), abits=draw(st.sampled_from([8, 8, 6, 4])),
                         weights=draw(st.sampled_from(["int", "pow2"])), per_channel=draw(st.booleans()))
    return GraphSpec(shapes[0], tuple(nodes), tuple(outputs), seed=draw(st.integers(0, 2 ** 16)),
                     in_bits=draw(st.sampled_from([8, 8, 6, 4])), quantizer=quantizer)
