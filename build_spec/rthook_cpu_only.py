# PyInstaller runtime hook, added only to CS_BUNDLE_CPU_ONLY=1 builds: those drop the
# CUDA libraries that torch loads lazily (cuDNN kernels, cuSOLVER, ...), so CUDA must
# never be used even on a machine with an NVIDIA GPU. Hiding the GPUs makes
# torch.cuda.is_available() False, and the app offers the CPU only.
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
