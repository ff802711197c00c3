"""The Image Studio's parameter panel: mode, prompts, sampling settings, seed, LoRA adapters.

``get_params()`` returns the same dict shape the engine records in each PNG (``metadata.py``):
prompt, negative, mode, steps, guidance, width, height, seed (None = random), batch, scheduler
(None = the model's default), strength, loras [{path, weight}]. ``set_params(d)`` applies any of
those keys (a dropped PNG, "reuse parameters"); ``validate()`` lists what is wrong, in words.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRegularExpression, Qt, Signal, Slot
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engines.diffusion.protocol import SCHEDULERS
from desktop_app.ui.widgets.named import named

MODES = (("txt2img", "Text to image"), ("img2img", "Image to image"), ("inpaint", "Inpaint"))
DEFAULT_SCHEDULER = "Model default"
MIN_SIZE = 64


class ParamsPanel(QWidget):
    """All generation settings. Emits ``mode_changed(str)`` when the mode switch moves."""

    mode_changed = Signal(str)
    lora_refused = Signal(str)  # a file that is not a LoRA adapter, in one line
    changed = Signal()

    def __init__(self, parent: QWidget | None = None, background=None) -> None:
        super().__init__(parent)
        self.background = background  # ctx.background: LoRA headers are read off the GUI thread
        self.missing_loras: list[str] = []
        self.setObjectName("studioParams")
        self.max_size = 2048  # the loaded model's maximum (updated when a model is loaded)
        self.size_multiple = 8  # 16 for SD3/FLUX (updated when a model is loaded)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        # mode switch: three exclusive, checkable buttons
        row = QHBoxLayout()
        row.setSpacing(2)
        self.mode_group = QButtonGroup(self)
        self.mode_group.setExclusive(True)
        self.mode_buttons: dict[str, QPushButton] = {}
        for i, (key, label) in enumerate(MODES):
            b = QPushButton(label)
            b.setCheckable(True)
            b.setObjectName(f"studioMode_{key}")
            b.setAccessibleName(f"Mode: {label}")
            b.setToolTip({"txt2img": "Make an image from the prompt alone",
                          "img2img": "Start from an image; strength sets how much changes",
                          "inpaint": "Repaint only the masked part of an image"}[key])
            self.mode_group.addButton(b, i)
            self.mode_buttons[key] = b
            row.addWidget(b)
        self.mode_buttons["txt2img"].setChecked(True)
        self.mode_group.idToggled.connect(self._on_mode_toggled)
        lay.addLayout(row)

        self.prompt = named(QPlainTextEdit(), "studioPrompt", "Prompt")
        self.prompt.setPlaceholderText("Describe the image… (Ctrl+Enter to generate)")
        self.prompt.setTabChangesFocus(True)
        self.prompt.setMinimumHeight(60)
        self.negative = named(QPlainTextEdit(), "studioNegative", "Negative prompt")
        self.negative.setPlaceholderText("What to avoid (optional)")
        self.negative.setTabChangesFocus(True)
        self.negative.setMaximumHeight(54)
        lbl = QLabel("&Prompt")
        lbl.setBuddy(self.prompt)
        self.prompt_row = QHBoxLayout()  # the label, and actions on the prompt (Enhance)
        self.prompt_row.addWidget(lbl)
        self.prompt_row.addStretch(1)
        lay.addLayout(self.prompt_row)
        lay.addWidget(self.prompt, 2)
        lbl = QLabel("&Negative prompt")
        lbl.setBuddy(self.negative)
        lay.addWidget(lbl)
        lay.addWidget(self.negative, 1)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.steps.setValue(20)
        self.steps.setObjectName("studioSteps")
        self.steps.setAccessibleName("Steps")
        form.addRow("&Steps", self.steps)

        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance.setValue(7.0)
        self.guidance.setObjectName("studioGuidance")
        self.guidance.setAccessibleName("Guidance scale")
        self.guidance.setToolTip("How closely to follow the prompt (CFG scale). Turbo/LCM models want 0–2.")
        form.addRow("&Guidance", self.guidance)

        size_row = QHBoxLayout()
        self.width_box = QSpinBox()
        self.height_box = QSpinBox()
        for box, name in ((self.width_box, "Width"), (self.height_box, "Height")):
            box.setRange(8, 8192)
            box.setSingleStep(8)
            box.setValue(512)
            box.setSuffix(" px")
            box.setObjectName(f"studio{name}")
            box.setAccessibleName(f"{name} in pixels")
            box.setToolTip(f"{name}: a multiple of 8, at least {MIN_SIZE}")
            box.valueChanged.connect(self._on_size_changed)
        self.swap_size = named(QPushButton("⇄"), "studioSwapSize", "Swap width and height", "Swap width and height")
        self.swap_size.setMaximumWidth(32)
        self.swap_size.clicked.connect(self._on_swap_size)
        from desktop_app.core.image_presets import ASPECTS, STYLES

        self.native = 512  # the model's trained side: the aspect presets keep its pixel count
        self._setting_aspect = False
        self.aspect = named(QComboBox(), "studioAspect", "Aspect ratio", "Aspect ratio (sized for the model)")
        self.aspect.addItem("Custom", None)
        for label, ratio in ASPECTS:
            self.aspect.addItem(label, ratio)
        self.aspect.activated.connect(self._on_aspect)
        aspect_label = QLabel("&Aspect")
        aspect_label.setBuddy(self.aspect)
        form.addRow(aspect_label, self.aspect)
        self.style_combo = named(QComboBox(), "studioStyle", "Style preset",
                           "Adds words for this style to the prompt and the negative prompt")
        for name in STYLES:
            self.style_combo.addItem(name)
        style_label = QLabel("St&yle")
        style_label.setBuddy(self.style_combo)
        form.addRow(style_label, self.style_combo)
        size_row.addWidget(self.width_box, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_box, 1)
        size_row.addWidget(self.swap_size)
        size_label = QLabel("Si&ze")
        size_label.setBuddy(self.width_box)
        form.addRow(size_label, size_row)
        self.size_error = named(QLabel(), "studioSizeError")
        self.size_error.setWordWrap(True)
        self.size_error.setVisible(False)
        self.size_error.setForegroundRole(self.size_error.foregroundRole())
        form.addRow("", self.size_error)

        seed_row = QHBoxLayout()
        self.random_seed = named(QCheckBox("Random"), "studioRandomSeed", "Random seed")
        self.random_seed.setChecked(True)
        self.seed = named(QLineEdit(), "studioSeed", "Seed")
        self.seed.setPlaceholderText("random")
        self.seed.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,18}"), self.seed))
        self.seed.setEnabled(False)
        self.random_seed.toggled.connect(self._on_random_seed)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        seed_label = QLabel("S&eed")
        seed_label.setBuddy(self.seed)
        form.addRow(seed_label, seed_row)

        self.batch = QSpinBox()
        self.batch.setRange(1, 16)
        self.batch.setObjectName("studioBatch")
        self.batch.setAccessibleName("Batch count")
        self.batch.setToolTip("Number of images; each uses the next seed")
        form.addRow("&Batch count", self.batch)

        self.scheduler = named(QComboBox(), "studioScheduler", "Scheduler")
        self.scheduler.addItem(DEFAULT_SCHEDULER)
        self.scheduler.addItems(list(SCHEDULERS))
        self.scheduler.setToolTip("Sampler. LCM is for LCM / turbo models.")
        form.addRow("Sc&heduler", self.scheduler)

        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.01, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setValue(0.75)
        self.strength.setObjectName("studioStrength")
        self.strength.setAccessibleName("Denoising strength")
        self.strength.setToolTip("How much of the init image is repainted (1 = all)")
        self.strength_label = QLabel("S&trength")
        self.strength_label.setBuddy(self.strength)
        form.addRow(self.strength_label, self.strength)
        lay.addLayout(form)

        # LoRA adapters: a two-column table (file, weight)
        lora_head = QHBoxLayout()
        lora_head.addWidget(QLabel("LoRA adapters"))
        lora_head.addStretch(1)
        self.add_lora = named(QPushButton("Add…"), "studioAddLora", "Add LoRA adapter")
        self.add_lora.clicked.connect(self._on_add_lora_clicked)
        self.remove_lora = named(QPushButton("Remove"), "studioRemoveLora", "Remove selected LoRA adapter")
        self.remove_lora.clicked.connect(self._on_remove_lora)
        lora_head.addWidget(self.add_lora)
        lora_head.addWidget(self.remove_lora)
        lay.addLayout(lora_head)
        self.lora_table = named(QTableWidget(0, 2), "studioLoras", "LoRA adapters and weights")
        self.lora_table.setHorizontalHeaderLabels(["File", "Weight"])
        self.lora_table.verticalHeader().setVisible(False)
        self.lora_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.lora_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.lora_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.lora_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.lora_table.setMaximumHeight(90)
        lay.addWidget(self.lora_table)

        for w in (self.steps, self.batch):
            w.valueChanged.connect(self.changed)
        self.guidance.valueChanged.connect(self.changed)
        self.prompt.textChanged.connect(self.changed)
        self._on_mode_toggled(0, True)

    # mode -----------------------------------------------------------------------------------------
    def mode(self) -> str:
        return MODES[max(0, self.mode_group.checkedId())][0]

    def set_mode(self, mode: str) -> None:
        b = self.mode_buttons.get(mode)
        if b is not None:
            b.setChecked(True)

    @Slot(int, bool)
    def _on_mode_toggled(self, _id: int, checked: bool) -> None:
        if not checked:
            return
        mode = self.mode()
        self.strength.setVisible(mode != "txt2img")
        self.strength_label.setVisible(mode != "txt2img")
        self.mode_changed.emit(mode)

    # size ---------------------------------------------------------------------------------------
    def size_errors(self) -> list[str]:
        errs = []
        for name, v in (("Width", self.width_box.value()), ("Height", self.height_box.value())):
            if v < MIN_SIZE or v % self.size_multiple:
                errs.append(f"{name} {v} px is not valid: use a multiple of {self.size_multiple}, at least {MIN_SIZE}.")
            elif v > self.max_size:
                errs.append(f"{name} {v} px is more than this model's maximum ({self.max_size} px).")
        return errs

    @Slot(int)
    def _on_size_changed(self, _v: int) -> None:
        ratio = self.aspect.currentData() if hasattr(self, "aspect") else None
        if ratio and not self._setting_aspect:  # a size typed by hand: the preset no longer holds
            self.aspect.setCurrentIndex(0)
        errs = self.size_errors()
        self.size_error.setText("\n".join(errs))
        self.size_error.setVisible(bool(errs))
        self.changed.emit()

    def set_native(self, native: int) -> None:
        self.native = int(native) if native else 512

    @Slot(int)
    def _on_aspect(self, index: int) -> None:
        from desktop_app.core.image_presets import size_for_aspect

        ratio = self.aspect.itemData(index)
        if ratio:
            w, h = size_for_aspect(self.native, tuple(ratio), max(64, self.size_multiple))
            self._setting_aspect = True
            try:
                self.width_box.setValue(min(w, self.max_size))
                self.height_box.setValue(min(h, self.max_size))
            finally:
                self._setting_aspect = False

    @Slot()
    def _on_swap_size(self) -> None:
        w, h = self.width_box.value(), self.height_box.value()
        self.width_box.setValue(h)
        self.height_box.setValue(w)

    def set_max_size(self, px: int | None) -> None:
        if px:
            self.max_size = int(px)
            self._on_size_changed(0)

    def set_model_limits(self, schedulers: list[str] | None, size_multiple: int | None) -> None:
        """Follow the loaded model: its schedulers (SD3/FLUX use flow matching) and size multiple."""
        if size_multiple:
            self.size_multiple = int(size_multiple)
            for box in (self.width_box, self.height_box):
                box.setSingleStep(self.size_multiple)
            self._on_size_changed(0)
        if schedulers:
            current = self.scheduler.currentText()
            self.scheduler.blockSignals(True)
            self.scheduler.clear()
            self.scheduler.addItem(DEFAULT_SCHEDULER)
            self.scheduler.addItems([str(x) for x in schedulers])
            i = self.scheduler.findText(current)
            self.scheduler.setCurrentIndex(max(i, 0))
            self.scheduler.blockSignals(False)

    # seed ---------------------------------------------------------------------------------------
    @Slot(bool)
    def _on_random_seed(self, on: bool) -> None:
        self.seed.setEnabled(not on)
        if not on and not self.seed.text():
            import random

            self.seed.setText(str(random.randrange(2**32)))

    def set_seed(self, seed: int | None) -> None:
        if seed is None:
            self.random_seed.setChecked(True)
        else:
            self.random_seed.setChecked(False)
            self.seed.setText(str(int(seed)))

    # LoRA ---------------------------------------------------------------------------------------
    def add_lora_row(self, path: str, weight: float = 1.0) -> None:
        r = self.lora_table.rowCount()
        self.lora_table.insertRow(r)
        item = QTableWidgetItem(Path(path).name)
        item.setToolTip(str(path))
        item.setData(Qt.ItemDataRole.UserRole, str(path))
        self.lora_table.setItem(r, 0, item)
        spin = QDoubleSpinBox()
        spin.setRange(-2.0, 2.0)
        spin.setSingleStep(0.1)
        spin.setDecimals(2)
        spin.setValue(float(weight))
        spin.setAccessibleName(f"Weight of LoRA {Path(path).name}")
        self.lora_table.setCellWidget(r, 1, spin)

    def loras(self) -> list[dict]:
        out = []
        for r in range(self.lora_table.rowCount()):
            item = self.lora_table.item(r, 0)
            spin = self.lora_table.cellWidget(r, 1)
            out.append({"path": item.data(Qt.ItemDataRole.UserRole), "weight": float(spin.value())})
        return out

    @Slot()
    def _on_add_lora_clicked(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add LoRA adapters", "", "LoRA adapters (*.safetensors)")
        self.add_lora_files(files)

    def add_lora_files(self, files: list[str]) -> None:
        """Check each file's header (a LoRA adapter, not a checkpoint or a VAE), then add it; a file
        that is not one is refused with the reason (``lora_refused``)."""
        from desktop_app.core.model_files import check_lora_file

        for f in files:
            if self.background is None:
                try:
                    check_lora_file(Path(f))
                except Exception as exc:  # noqa: BLE001 - ModelFormatError, OSError: the message says why
                    self.lora_refused.emit(str(exc))
                else:
                    self.add_lora_row(f)
                continue
            self.background.run(lambda _t, f=f: check_lora_file(Path(f)),
                                on_success=lambda _n, f=f: self.add_lora_row(f),
                                on_failure=lambda exc: self.lora_refused.emit(str(exc)))

    @Slot()
    def _on_remove_lora(self) -> None:
        rows = sorted({i.row() for i in self.lora_table.selectedIndexes()}, reverse=True)
        for r in rows:
            self.lora_table.removeRow(r)

    # whole panel ------------------------------------------------------------------------------
    def add_prompt_action(self, widget) -> None:
        """A button beside the Prompt label (the Studio's Enhance)."""
        self.prompt_row.addWidget(widget)

    def get_params(self) -> dict:
        sched = self.scheduler.currentText()
        seed_text = self.seed.text().strip()
        return {
            "prompt": self.prompt.toPlainText(),
            "negative": self.negative.toPlainText(),
            "mode": self.mode(),
            "steps": self.steps.value(),
            "guidance": round(self.guidance.value(), 2),
            "width": self.width_box.value(),
            "height": self.height_box.value(),
            "seed": None if self.random_seed.isChecked() or not seed_text else int(seed_text),
            "batch": self.batch.value(),
            "scheduler": None if sched == DEFAULT_SCHEDULER else sched,
            "strength": round(self.strength.value(), 2),
            "loras": self.loras(),
            "style": self.style_combo.currentText(),
        }

    def set_params(self, d: dict, *, include_mode: bool = False) -> list[str]:
        """Apply the known keys of ``d``; returns the names that were applied."""
        applied = []
        if "prompt" in d and d["prompt"] is not None:
            self.prompt.setPlainText(str(d["prompt"]))
            applied.append("prompt")
        if "negative" in d:
            self.negative.setPlainText(str(d.get("negative") or ""))
            applied.append("negative")
        for key, box in (("steps", self.steps), ("width", self.width_box), ("height", self.height_box),
                         ("batch", self.batch)):
            try:
                if d.get(key) is not None:
                    box.setValue(int(d[key]))
                    applied.append(key)
            except (TypeError, ValueError):
                pass
        for key, box in (("guidance", self.guidance), ("strength", self.strength)):
            try:
                if d.get(key) is not None:
                    box.setValue(float(d[key]))
                    applied.append(key)
            except (TypeError, ValueError):
                pass
        if "seed" in d:
            try:
                self.set_seed(None if d["seed"] is None else int(d["seed"]))
                applied.append("seed")
            except (TypeError, ValueError):
                pass
        sched = d.get("scheduler")
        if sched:
            i = self.scheduler.findText(str(sched))
            if i >= 0:
                self.scheduler.setCurrentIndex(i)
                applied.append("scheduler")
        elif "scheduler" in d:
            self.scheduler.setCurrentIndex(0)
        if isinstance(d.get("loras"), list):
            self.lora_table.setRowCount(0)
            self.missing_loras = []  # named in the image, not on this machine (private images keep names only)
            for x in d["loras"]:
                if isinstance(x, dict) and x.get("path"):
                    if Path(str(x["path"])).is_file():
                        self.add_lora_row(str(x["path"]), float(x.get("weight", 1.0)))
                    else:
                        self.missing_loras.append(Path(str(x["path"])).name)
            applied.append("loras")
        if include_mode and d.get("mode") in dict(MODES):
            self.set_mode(d["mode"])
            applied.append("mode")
        return applied

    def validate(self) -> list[str]:
        """What stops a generation, in words (empty when all is well)."""
        errs = self.size_errors()
        if not self.random_seed.isChecked() and not self.seed.text().strip():
            errs.append("Enter a seed, or tick Random.")
        return errs
