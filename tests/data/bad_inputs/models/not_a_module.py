"""A factory that returns something other than an nn.Module."""


def Net(num_classes: int = 10):
    return [1, 2, 3]
