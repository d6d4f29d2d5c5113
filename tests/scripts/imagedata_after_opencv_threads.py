# Uses OpenCV's thread pool in the parent, then reads images in a forked prefetch worker.
import sys

import cv2
import numpy as np

import caffe
from caffe.model_io import parse_net_text

folder = sys.argv[1]
img = np.random.rand(1500, 1500).astype(np.float32)
for _ in range(3):
    cv2.GaussianBlur(cv2.resize(img, (1000, 1000)), (0, 0), 3)
lines = []
for i in range(3):
    cv2.imwrite(f"{folder}/f{i}.png", (np.random.rand(64, 64) * 255).astype(np.uint8))
    lines.append(f"f{i}.png {i}")
open(f"{folder}/list.txt", "w").write("\n".join(lines) + "\n")
net = caffe.Net(net_param=parse_net_text(f'''name: "t"
layer {{ name: "d" type: "ImageData" top: "data" top: "label"
        image_data_param {{ source: "{folder}/list.txt" root_folder: "{folder}/" batch_size: 3
                            new_height: 32 new_width: 32 is_color: false }} }}'''), phase=caffe.TEST)
for _ in range(3):
    net.forward()
print("read", net.blobs["data"].data.shape)
