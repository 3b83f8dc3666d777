# The codes of the ops and losses a compiled plan runs, shared by the training plan
# (_plan.pyx) and the loss evaluator (_evaluate.pyx); fastnn.plan builds the op specs of
# both by these names (each module's OP_KINDS / LOSS_KINDS dicts).
cdef enum:
    OP_AFFINE = 0
    OP_MAXOUT = 1
    OP_ACT = 2
    OP_PRELU = 3
    OP_DROPOUT = 4
    OP_BATCHNORM = 5
    OP_SCALE = 6        # vanilla dropout at evaluation, out = p * x (the evaluator's only)

# class labels (softmax, SVM), element-wise targets, hierarchical softmax
cdef enum:
    LOSS_SOFTMAX = 0
    LOSS_SVM = 1
    LOSS_ELEMENTWISE = 2
    LOSS_HIERARCHICAL = 3
