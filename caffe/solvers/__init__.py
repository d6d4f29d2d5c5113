"""Parts of the solver: learning-rate policies, Caffe's update rules, glog-style logging."""
