# A typical pycaffe classification script of the Caffe 1.0 era, kept as users wrote it.
import sys

import numpy as np

import caffe

model_def, model_weights, mean_file, image_file, out_file = sys.argv[1:6]

caffe.set_mode_cpu()

net = caffe.Net(model_def,      # defines the structure of the model
                model_weights,  # contains the trained weights
                caffe.TEST)     # use test mode (e.g., don't perform dropout)

mu = np.load(mean_file)
mu = mu.mean(1).mean(1)  # average over pixels to obtain the mean (BGR) pixel values
print('mean-subtracted values:', list(zip('BGR', mu)))

transformer = caffe.io.Transformer({'data': net.blobs['data'].data.shape})
transformer.set_transpose('data', (2, 0, 1))     # move image channels to outermost dimension
transformer.set_mean('data', mu)                 # subtract the dataset-mean value in each channel
transformer.set_raw_scale('data', 255)           # rescale from [0, 1] to [0, 255]
transformer.set_channel_swap('data', (2, 1, 0))  # swap channels from RGB to BGR

net.blobs['data'].reshape(50,        # batch size
                          3,         # 3-channel (BGR) images
                          32, 32)    # image size is 32x32

image = caffe.io.load_image(image_file)
transformed_image = transformer.preprocess('data', image)

net.blobs['data'].data[...] = transformed_image

output = net.forward()

output_prob = output['prob'][0]  # the output probability vector for the first image in the batch

print('predicted class is:', output_prob.argmax())
for layer_name, blob in net.blobs.items():
    print(layer_name + '\t' + str(blob.data.shape))
for layer_name, param in net.params.items():
    print(layer_name + '\t' + str(param[0].data.shape), str(param[1].data.shape))
np.save(out_file, output_prob)
