"""Convolutional autoencoder on CelebA at 64x64x3, through TFDS's own `celeb_a` builder.

TFDS's builder needs TensorFlow to prepare the data set once (pip install 'jaxae[tfds]';
without it the run stops with one line saying so).
Command: python train.py --config=configs/conv_ae_celeb_a.py --workdir=runs/celeb_a_conv_ae
then python evaluate.py --workdir=runs/celeb_a_conv_ae. The 218x178 photographs are resized
(short side to 64) and centre-cropped to 64x64 as they are read. CelebA has no class label:
every image is of one class, "all". Its 162,770 training images take 1.9 GiB at 64x64x3:
under the default budget (config.data.memory_budget_mb=2048) they are held in device memory;
a smaller budget (or --config.data.streaming=stream) streams them from the array_record files
with Grain.
Results: none recorded yet (they need CelebA's download).
"""

from jaxae.configs import conv_ae_cifar10


def get_config():
    config = conv_ae_cifar10.get_config()  # stages from the size: 64 -> 32 -> 16 -> 8 -> 4x4
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.train.num_epochs = 5
    return config
