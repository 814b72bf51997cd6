"""AlexNet Fig. 4 (left, §6.1): test images, each with the model's five most probable
classes as horizontal probability bars; the correct label is written under the image
and its bar is red when it is among the five."""

import numpy as np

from kzoo.visualize.common import figure, save_figure

TRUE_COLOUR, OTHER_COLOUR = "red", "tab:blue"  # Fig. 4: the correct label's bar in red


def class_index(value, class_names):
    """A label given on the command line -> its class index: a class name, else an index
    0..classes-1. Raises a ValueError naming both forms."""
    if value in class_names:
        return list(class_names).index(value)
    try:
        index = int(value)
    except ValueError:
        index = -1
    if not 0 <= index < len(class_names):
        shown = ", ".join(map(repr, class_names[:5])) + (", ..." if len(class_names) > 5 else "")
        raise ValueError(f"--labels: {value!r} is neither a class name ({shown}) nor a class index "
                         f"0..{len(class_names) - 1}; give one per image, in the order the images are read.")
    return index


def predictions_plot(pictures, top, labels=None, class_names=None, titles=None, columns=4):
    """The figure of `predictions_figure`.

    pictures: (N, H, W, 3) RGB in [0, 1] (`TrainedModel.pictures`).
    top: per image, [(class index, class name, probability)], best first
        (`TrainedModel.decode(probabilities, top=5)`).
    labels: per image the correct class index, or None where it is not known
        (None: none known). Needs `class_names` to write the label's name.
    titles: per image a title (e.g. its file name), or None.
    Each image sits above its bars (the best on top, length = probability, 0..1), `columns`
    images to a row; each bar axis has the label "predictions I" (I: the image's index).
    """
    n = len(pictures)
    if len(top) != n:
        raise ValueError(f"{n} pictures but predictions for {len(top)}; give one list of classes per picture.")
    labels = [None] * n if labels is None else list(labels)
    if len(labels) != n:
        raise ValueError(f"{n} pictures but {len(labels)} labels; give one label (or None) per picture.")
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = figure(2 * rows, columns, size=2.4)
    axes[0, 0].get_gridspec().set_height_ratios([3, 2] * rows)  # picture, then its bars
    fig.set_size_inches(2.4 * columns, 2.4 * rows * 5 / 3)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (picture, classes, label) in enumerate(zip(pictures, top, labels)):
        image_ax, bar_ax = axes[2 * (i // columns), i % columns], axes[2 * (i // columns) + 1, i % columns]
        image_ax.imshow(np.clip(picture, 0, 1))
        if titles is not None:
            image_ax.set_title(str(titles[i]), fontsize=8)
        if label is not None:  # written under the image, as in Fig. 4
            name = class_names[label] if class_names is not None else f"class {label}"
            image_ax.text(0.5, -0.03, str(name), transform=image_ax.transAxes, ha="center", va="top",
                          fontsize=8, fontweight="bold")
        bar_ax.set_axis_on()
        bar_ax.set_label(f"predictions {i}")
        positions = np.arange(len(classes))
        bar_ax.barh(positions, [p for _, _, p in classes], height=0.8,
                    color=[TRUE_COLOUR if c == label else OTHER_COLOUR for c, _, _ in classes])
        for y, (_, name, _) in zip(positions, classes):  # the class names on their bars, as in Fig. 4
            bar_ax.text(0.02, y, str(name), va="center", ha="left", fontsize=7)
        bar_ax.set_xlim(0, 1)
        bar_ax.set_ylim(len(classes) - 0.5, -0.5)  # the most probable on top
        bar_ax.set_yticks([])
        bar_ax.set_xticks([0, 0.5, 1])
        bar_ax.tick_params(labelsize=6)
    fig.subplots_adjust(hspace=0.25, wspace=0.15)
    return fig


def predictions_figure(pictures, top, path, labels=None, class_names=None, titles=None, columns=4):
    """AlexNet Fig. 4 (left) at `path` (see `predictions_plot`); returns `path`."""
    return save_figure(predictions_plot(pictures, top, labels, class_names, titles, columns), path)
