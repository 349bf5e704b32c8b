"""CovidNet3D differentiable architecture search (Gumbel-softmax over 3-D MBConv ops), genotype export."""
