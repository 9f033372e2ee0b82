def load_generator(p): raise NotImplementedError
def load_discriminator(p): raise NotImplementedError
