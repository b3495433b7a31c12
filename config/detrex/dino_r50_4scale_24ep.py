# detrex DINO-R50-4scale, 24 epochs: 50.6 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-resnet/dino_r50_4scale_24ep.py
_base_ = ['dino_r50_4scale_12ep.py']

# this model of detrex keeps the original DINO's position embedding
pe_temperatureH = 20
pe_temperatureW = 20
pe_offset = 0.0
epochs = 24
lr_drop = 20
