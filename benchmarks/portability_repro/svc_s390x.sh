. "$(dirname "$0")/trees.sh"  # SVC saved on amd64 with pickle protocol 5 fails at predict on s390x; protocol 4 works
on amd64 -c "import pickle, numpy as np; from sklearn.svm import SVC; X = np.random.rand(60, 3); m = SVC().fit(X, X[:, 0] > .5); pickle.dump(m, open('svc4.pkl', 'wb'), protocol=4); pickle.dump(m, open('svc5.pkl', 'wb'), protocol=5)"
on s390x -c "import pickle, numpy as np; X = np.random.rand(3, 3); print('protocol 4:', pickle.load(open('svc4.pkl', 'rb')).predict(X)); pickle.load(open('svc5.pkl', 'rb')).predict(X)"
