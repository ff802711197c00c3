"""Qt-free inference engines, written as generators that honour a CancelToken."""
