"""Building blocks of the procedural scene renderer (`degmix_tuning.data.synthetic.render` is the entry point).

geometry: ray-primitive intersection · camera: pinhole rays · shading / materials: textures and light ·
raycast: scene description, nearest-hit casting, boundaries · placement: floor plans · furniture, figures,
voc_objects: object recipes · indoor (NYUD-like rooms), pascal_like (people and VOC objects, outdoors or in a
room): whole-scene composition · classes: label ids per flavour.
"""
